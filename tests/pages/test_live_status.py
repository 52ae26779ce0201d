"""The payer page's live status over HTTP: the server-sent events stream, its end, its bounds, and
what the page is allowed to load."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx

from libs.common import limits
from tests.common.support import poll
from tests.pages.conftest import Shop
from tests.pages.test_checkout_page import create
from tools.devstack import Stack


@asynccontextmanager
async def client_at(stack: Stack, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client connecting from `address` (any of 127.0.0.0/8 reaches the gateway on loopback),
    so a test has a client address of its own."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=stack.base_url, transport=transport, timeout=15) as client:
        yield client


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


async def test_the_stream_sends_the_status_then_the_change_and_ends_when_the_invoice_is_final(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop)
    async with http.stream("GET", f"/pay/{invoice['id']}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        name, first = await anext(stream)
        assert (name, first["status"], first["label"], first["payable"]) == (
            "status",
            "pending",
            "Awaiting payment",
            True,
        )

        cancelled = await http.post(f"/v1/invoices/{invoice['id']}/cancel", json={}, headers=shop.auth)
        assert cancelled.status_code == 200, cancelled.text
        name, change = await anext(stream)
        assert (name, change["status"], change["label"], change["payable"]) == (
            "status",
            "cancelled",
            "Cancelled",
            False,
        )
        assert change["detail"] == "The merchant cancelled this invoice. Do not send a payment."
        assert [e async for e in stream] == [("end", {"status": "cancelled"})]  # and the stream closed


async def test_a_final_invoice_gets_its_status_and_the_end_at_once(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop)
    await http.post(f"/v1/invoices/{invoice['id']}/cancel", json={}, headers=shop.auth)
    async with http.stream("GET", f"/pay/{invoice['id']}/events") as response:
        got = [(name, data["status"]) async for name, data in events(response)]
    assert got == [("status", "cancelled"), ("end", "cancelled")]


async def test_one_client_address_holds_a_bounded_number_of_live_streams(
    stack: Stack, http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop)
    path = f"/pay/{invoice['id']}/events"
    bound = limits.PAGE_STREAMS_PER_CLIENT_MAX
    async with AsyncExitStack() as held, client_at(stack, "127.0.0.2") as crowd:
        # Each stream's reader is kept: a reader collected as garbage closes its connection.
        streams = []
        for _ in range(bound):
            response = await held.enter_async_context(crowd.stream("GET", path))
            assert response.status_code == 200
            reader = events(response)
            await anext(reader)  # open and sending
            streams.append((response, reader))

        refused = await crowd.get(path)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["error"]["code"] == "rate_limited"

        # Another address is not held back by this one.
        async with client_at(stack, "127.0.0.3") as other, other.stream("GET", path) as response:
            assert response.status_code == 200

        await streams[0][0].aclose()  # a closed stream gives its slot back

        async def reopened() -> bool:
            async with crowd.stream("GET", path) as again:
                return again.status_code == 200

        await poll(reopened, what="a slot to come free after a stream closed")


async def test_an_unknown_invoice_has_a_not_found_page_and_no_stream(http: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    page = await http.get(f"/pay/{missing}")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "No such invoice" in page.text
    stream = await http.get(f"/pay/{missing}/events")
    assert stream.status_code == 404 and stream.json()["error"]["code"] == "not_found"
    assert (await http.get("/pay/not-an-id")).status_code == 404


async def test_the_page_may_load_only_this_sites_scripts_and_styles_and_never_be_framed(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop)
    page = await http.get(f"/pay/{invoice['id']}")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy
        and "script-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
    )
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    # No inline script (the policy would refuse it) and nothing fetched from another site.
    assert "<script>" not in page.text
    assert 'src="http' not in page.text and 'href="http' not in page.text.split("</head>")[0]


async def test_the_polling_fallback_answers_what_the_stream_would(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop)
    status = await http.get(f"/pay/{invoice['id']}/status")
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "pending" and body["owed"] == invoice["crypto_amount"].rstrip("0").rstrip(".")
    async with http.stream("GET", f"/pay/{invoice['id']}/events") as response:
        _, first = await anext(events(response))
    assert {**first, "seconds_left": None} == {**body, "seconds_left": None}


async def test_every_invoice_response_links_its_hosted_page(
    stack: Stack, http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop)
    url = f"{stack.base_url}/pay/{invoice['id']}"
    fetched = (await http.get(f"/v1/invoices/{invoice['id']}", headers=shop.auth)).json()
    listed = (await http.get("/v1/invoices", headers=shop.auth)).json()["data"]
    assert invoice["checkout_url"] == fetched["checkout_url"] == url
    assert [i["checkout_url"] for i in listed] == [url]
    assert (await http.get(url)).status_code == 200
