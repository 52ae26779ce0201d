"""The payer's hosted checkout page, `/pay/{invoice_id}`, and its live status.

Public like `GET /v1/checkout/{id}`, and served the same way: limited per client IP, routed by
the invoice id (it carries its merchant's slot, so no key and no directory), read from the same
in-memory view until the invoice's next event (routes/invoices.py: `checkout_view`). Live
updates are server-sent events (`/pay/{id}/events`) woken by the invoice's own events, which
the gateway's listener hears once for every page (pages/live.py); the page polls
`/pay/{id}/status` only when EventSource cannot be used. The two live endpoints are operations
of the API (JSON errors, the documented status model); the page itself answers in HTML, errors
included.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import orjson
from checkout.merchant.v1 import merchant_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common.cache import merchant_key
from services.gateway.auth import client_ip, limit_by_ip
from services.gateway.context import CallContext, request_id_of
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, path_id, to_json
from services.gateway.pages import html, sse
from services.gateway.pages.payer import PayerPage
from services.gateway.pages.state import pages_of
from services.gateway.routes.invoices import checkout_view
from services.gateway.schemas.payer import PayerStatus
from services.gateway.state import GatewayState, state_of

log = logging.getLogger("checkout.gateway.pages")

# Without an event the stream still says something this often (a comment), which keeps proxies
# from closing an idle connection; while NATS is away it re-reads the invoice instead.
HEARTBEAT_SECONDS = 15.0
# A stream ends after this long and EventSource opens a new one, so no connection is forever.
STREAM_MAX_SECONDS = 30 * 60
RECONNECT_MILLISECONDS = 2000
STREAMS_RETRY_AFTER_SECONDS = 30


async def business_name(state: GatewayState, merchant_id: str, context: CallContext) -> str | None:
    """The merchant's name for the page header, from the warm cache the merchant service
    invalidates; a page without it beats no page, so a failure only drops the name."""
    if not merchant_id:
        return None
    key = merchant_key(merchant_id)
    cached = await state.cache.get(key)
    if cached is not None:
        try:
            return merchant_pb2.Merchant.FromString(cached).business_name or None
        except Exception:  # DecodeError or worse: a bad entry is just a miss
            pass
    backends = state.backends
    try:
        merchant = await backends.call(
            backends.merchants(backends.shard_of(uuid.UUID(merchant_id))).GetMerchant,
            merchant_pb2.GetMerchantRequest(merchant_id=merchant_id),
            context,
        )
    except (ApiError, ValueError) as error:
        log.warning("payer page: no business name for merchant %s: %s", merchant_id, error)
        return None
    await state.cache.set(key, merchant.SerializeToString(), hot=False)
    return merchant.business_name or None


def payer_error_page(error: ApiError, request: Request, missing: str = "invoice") -> Response:
    """A payer's page that cannot be shown (`missing`: what a bad link names), in words."""
    titles = {"not_found": f"No such {missing}", "rate_limited": "Too many requests"}
    messages = {
        "not_found": "Check the link you were given, or ask the merchant for it again.",
        "rate_limited": "This address asked too often. Wait a moment, then load the page again.",
    }
    return html.page(
        "error.html",
        {
            "title": titles.get(error.code, "This page cannot be shown right now"),
            "message": messages.get(
                error.code, "Try again in a moment. Nothing was lost: any payment you sent is still seen."
            ),
            "request_id": request_id_of(request),
        },
        status=error.status,
        headers=error.headers,
    )


async def pay_page(request: Request) -> Response:
    state = state_of(request)
    try:
        await limit_by_ip(request)
        invoice_id = path_id(request.path_params["invoice_id"])
        if invoice_id is None:
            # A person followed a broken link: that is "no such invoice", not a field error.
            raise ApiError.not_found("invoice")
        view = await checkout_view(state, invoice_id, request_id_of(request))
    except ApiError as error:
        return payer_error_page(error, request)
    context = CallContext(request_id_of(request), "anonymous")
    payer = PayerPage.of(view, await business_name(state, view.merchant_id, context))
    return html.page(
        "pay.html",
        {
            "page": payer,
            "qr": html.qr_svg(view.payment_uri) if view.payment_uri else "",
            "live_json": to_json(payer.live()).decode(),
            "events_url": f"/pay/{view.id}/events",
            "status_url": f"/pay/{view.id}/status",
        },
        headers={"Cache-Control": "no-store"},
    )


async def pay_status(args: Args[None, None]) -> PayerStatus:
    view = await checkout_view(state_of(args.request), args.ids["invoice_id"], request_id_of(args.request))
    return PayerPage.of(view, None).live()


def _unchanged_key(live: PayerStatus) -> object:
    # The countdown moves every second by itself; only a change of anything else is news.
    return live.model_dump(exclude={"seconds_left"})


async def pay_events(args: Args[None, None]) -> Response:
    request, invoice_id = args.request, args.ids["invoice_id"]
    state, pages = state_of(request), pages_of(request)
    client = client_ip(request)
    if state.live.ending:
        raise ApiError("unavailable", "the gateway is shutting down", headers={"Retry-After": "2"})
    if not pages.slots.acquire(client):
        raise ApiError(
            "rate_limited",
            f"at most {pages.slots.per_client} live payment pages may be open from one address",
            headers={"Retry-After": str(STREAMS_RETRY_AFTER_SECONDS)},
        )
    # Watch before the first read, so a change between the read and the watch is not missed.
    watch = state.live.watch(invoice_id)

    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            watch.close()
            pages.slots.release(client)

    request_id = request_id_of(request)
    try:
        view = await checkout_view(state, invoice_id, request_id)
    except BaseException:
        close()
        raise

    async def stream() -> AsyncIterator[bytes]:
        payer = PayerPage.of(view, None)
        live = payer.live()
        last = _unchanged_key(live)
        yield sse.retry(RECONNECT_MILLISECONDS)
        yield sse.event("status", to_json(live))
        ends_at = time.monotonic() + STREAM_MAX_SECONDS
        while not payer.final and not state.live.ending and time.monotonic() < ends_at:
            try:
                await asyncio.wait_for(watch.changed.wait(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                if state.listener.connected:
                    yield sse.comment("still watching")
                    continue
                # NATS is away: no event would wake this page, so it looks for itself.
            watch.changed.clear()
            if state.live.ending:
                break
            try:
                fresh = await checkout_view(state, invoice_id, request_id)
            except ApiError as error:
                # The page keeps what it shows and tries again at the next wake-up.
                yield sse.comment(f"invoice service: {error.code}")
                continue
            payer = PayerPage.of(fresh, None)
            live = payer.live()
            if _unchanged_key(live) != last:
                last = _unchanged_key(live)
                yield sse.event("status", to_json(live))
        if payer.final:
            # The page stops listening; without this EventSource would reconnect forever.
            yield sse.event("end", orjson.dumps({"status": payer.status}))

    return sse.EventStream(stream(), on_close=close)


TAG = "Checkout"
# The HTML page; its live endpoints are operations (routed, limited and validated as the API).
routes = [Route("/pay/{invoice_id}", pay_page, methods=["GET"])]
operations = [
    Operation(
        "GET", "/pay/{invoice_id}/status", pay_status, "The live status of the payer's hosted page", TAG,
        "public", response=PayerStatus, errors=(404,),
        description="What the page at `/pay/{invoice_id}` shows that can change, in its words; the page "
        "asks for it only where server-sent events (`/pay/{invoice_id}/events`, the same model per "
        "`status` event) cannot be used. No credentials; limited per client IP.",
    ),
    Operation(
        # Not in the document: a stream that stays open is no request/response pair to describe.
        "GET", "/pay/{invoice_id}/events", pay_events, "The payer page's live status as server-sent events",
        TAG, "public", media_type="text/event-stream", errors=(404,), documented=False,
    ),
]  # fmt: skip
