"""The merchant client against the real stack (the `stack` fixture: service processes and the
gateway over HTTP), as a merchant's code would use it."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from checkout_client import (
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
    WebhookSignatureError,
    calls,
    verify_webhook,
)

from services.merchant.webhooks import signing
from tools.devstack import DEMO_ETHEREUM_XPUB, Stack

ITEMS = [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}]


def onboard(stack: Stack) -> tuple[str, str]:
    """A fresh merchant and a secret key of it, made with the operator's client."""
    with Client(stack.base_url, stack.admin_token) as operator:
        merchant = operator.create_merchant(
            business_name="Client shop",
            contact_email=f"client-{uuid.uuid4().hex[:8]}@shop.test",
            wallets={"ethereum": DEMO_ETHEREUM_XPUB},
        )
        key = operator.create_api_key(merchant["id"], name="client tests")
    assert key["key"]
    return merchant["id"], key["key"]


def test_the_readme_quick_start_runs_as_written(
    stack: Stack, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = (repo_root / "README.md").read_text().split("## The Python client", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code
    _, key = onboard(stack)
    monkeypatch.setenv("CHECKOUT_URL", stack.base_url)
    monkeypatch.setenv("CHECKOUT_API_KEY", key)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code.group(1), {})
    first, listed = out.getvalue().splitlines()
    invoice_id, status, total, checkout_url = first.split()
    assert (status, Decimal(total)) == ("pending", Decimal("25.00"))
    assert checkout_url.endswith(f"/pay/{invoice_id}")
    assert listed == f"{invoice_id} 25.00 USD"


def test_a_post_carries_one_idempotency_key_so_sending_it_again_creates_nothing(stack: Stack) -> None:
    _, key = onboard(stack)
    with Client(stack.base_url, key) as client:
        body = calls.body(title="Once", items=ITEMS, currency="USD", crypto_currency="ETH")
        once = calls.create_invoice(body, None)
        assert once.headers and uuid.UUID(once.headers["Idempotency-Key"])
        first, again = client.send(once), client.send(once)  # what a retry after a lost answer sends
        assert again["id"] == first["id"]
        other = client.create_invoice(title="Once", items=ITEMS, currency="USD", crypto_currency="ETH")
        assert other["id"] != first["id"]  # a new call, a new key
        assert [i["id"] for i in client.iter_invoices()] == [other["id"], first["id"]]


def test_iterating_follows_the_cursor_over_every_page(stack: Stack) -> None:
    _, key = onboard(stack)
    with Client(stack.base_url, key) as client:
        made = [
            client.create_invoice(title=f"n{n}", items=ITEMS, currency="USD", crypto_currency="ETH")["id"]
            for n in range(3)
        ]
        page = client.list_invoices(limit=1)
        assert len(page["data"]) == 1 and page["next_cursor"]
        assert [i["id"] for i in client.iter_invoices(limit=1)] == made[::-1]
        assert [i["id"] for i in client.iter_invoices(limit=2, status="paid")] == []


def test_error_answers_raise_typed_errors_naming_the_fields(stack: Stack) -> None:
    _, key = onboard(stack)
    with Client(stack.base_url, key) as client:
        with pytest.raises(InvalidArgument) as invalid:
            client.create_invoice(title="", items=[], currency="USD", crypto_currency="ETH")
        assert {d["field"] for d in invalid.value.details} >= {"title", "items"}
        assert invalid.value.request_id
        with pytest.raises(NotFound):
            client.get_invoice(str(uuid.uuid4()))
    with Client(stack.base_url, "sk_wrong") as stranger, pytest.raises(Unauthenticated):
        stranger.list_invoices()


async def test_the_async_client_does_the_same_over_the_same_calls(stack: Stack) -> None:
    _, key = onboard(stack)
    async with AsyncClient(stack.base_url, key) as client:
        made = await client.create_invoice(title="Async", items=ITEMS, currency="USD", crypto_currency="ETH")
        assert (await client.get_invoice(made["id"]))["total"] == "25.00"
        assert (await client.checkout(made["id"]))["status"] == "pending"
        assert [i["id"] async for i in client.iter_invoices(limit=1)] == [made["id"]]


def test_429_and_503_are_retried_after_retry_after_and_then_raised() -> None:
    """The gateway's rate limits wait up to a window (a minute) before they lift, too long for a
    test: this gateway stand-in answers as it does when over a limit and when a shard is down."""
    seen: list[tuple[float, str | None]] = []
    answers = [
        httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"code": "rate_limited"}}),
        httpx.Response(503, headers={"Retry-After": "0"}, json={"error": {"code": "unavailable"}}),
        httpx.Response(201, json={"id": "x"}),
    ]

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append((time.monotonic(), request.headers.get("Idempotency-Key")))
        return answers[len(seen) - 1] if len(seen) <= len(answers) else answers[1]

    with Client("http://gateway.test", "k", transport=httpx.MockTransport(gateway)) as client:
        assert client.create_invoice(title="t")["id"] == "x"
        assert len(seen) == 3 and len({k for _, k in seen}) == 1  # one key for every attempt
        assert seen[1][0] - seen[0][0] >= 1.0  # waited what Retry-After said
    seen.clear()
    answers[2] = answers[1]
    policy = RetryPolicy(max_retries=2)
    transport = httpx.MockTransport(gateway)
    with (
        Client("http://gateway.test", "k", transport=transport, retry=policy) as client,
        pytest.raises(Unavailable),
    ):
        client.list_invoices()
    assert len(seen) == 3


def test_verify_webhook_accepts_what_the_merchant_service_signs_and_nothing_else() -> None:
    body = json.dumps({"type": "invoice.paid", "data": {"id": "x"}}).encode()
    now = int(time.time())
    new, old = signing.new_secret(), signing.new_secret()
    header = signing.sign_all([new, old], body, now)  # mid-rotation: both secrets sign
    verify_webhook(new, header, body)
    verify_webhook([old], header, body)
    problems: dict[str, Any] = {
        "another body": (new, header, body + b" "),
        "another secret": (signing.new_secret(), header, body),
        "stale": (new, signing.sign(new, body, now - 301), body),
        "garbage": (new, "t=1,v1=zz", body),
    }
    for name, (secret, signed, sent) in problems.items():
        with pytest.raises(WebhookSignatureError):
            verify_webhook(secret, signed, sent)
            pytest.fail(name)
