"""The payer's hosted checkout page, `/pay/{invoice_id}`, and its live status.

Public like `GET /v1/checkout/{id}` and routed the same way: the invoice id carries its
merchant's slot, so the page needs no key and no directory. Live updates are server-sent events
(`/pay/{id}/events`) woken by the invoice's own events on NATS (pages/live.py); the page polls
`/pay/{id}/status` only when EventSource cannot be used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

from checkout.invoice.v1 import invoice_pb2
from checkout.merchant.v1 import merchant_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.common.cache import merchant_key
from services.gateway.context import CallContext, request_id_of
from services.gateway.errors import ApiError
from services.gateway.pages import html, sse
from services.gateway.pages.payer import PayerPage
from services.gateway.pages.state import pages_of
from services.gateway.state import GatewayState, state_of
from services.gateway.validation import path_id

log = logging.getLogger("checkout.gateway.pages")

# Without a NATS message the stream still says something this often (a comment), which keeps
# proxies from closing an idle connection; with NATS down it re-reads the invoice instead.
HEARTBEAT_SECONDS = 15.0
# A stream ends after this long and EventSource opens a new one, so no connection is forever.
STREAM_MAX_SECONDS = 30 * 60
RECONNECT_MILLISECONDS = 2000


async def _view(state: GatewayState, invoice_id: uuid.UUID, context: CallContext) -> invoice_pb2.CheckoutView:
    backends = state.backends
    return await backends.call(
        backends.invoices(backends.shard_of(invoice_id)).GetCheckout,
        invoice_pb2.GetCheckoutRequest(invoice_id=str(invoice_id)),
        context,
    )


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


def _context(request: Request) -> CallContext:
    return CallContext(request_id_of(request), "anonymous")


def _error_page(error: ApiError, request: Request) -> Response:
    titles = {"not_found": "No such invoice"}
    return html.page(
        "error.html",
        {
            "title": titles.get(error.code, "This page cannot be shown right now"),
            "message": (
                "Check the link you were given, or ask the merchant for it again."
                if error.code == "not_found"
                else "Try again in a moment. Nothing was lost: any payment you sent is still seen."
            ),
            "request_id": request_id_of(request),
        },
        status=error.status,
        headers=error.headers,
    )


async def pay_page(request: Request) -> Response:
    state = state_of(request)
    try:
        invoice_id = path_id(request, "invoice", name="invoice_id")
        view = await _view(state, invoice_id, _context(request))
    except ApiError as error:
        return _error_page(error, request)
    payer = PayerPage.of(view, await business_name(state, view.merchant_id, _context(request)))
    return html.page(
        "pay.html",
        {
            "page": payer,
            "qr": html.qr_svg(view.payment_uri) if view.payment_uri else "",
            "live_json": json.dumps(payer.live()),
            "events_url": f"/pay/{view.id}/events",
            "status_url": f"/pay/{view.id}/status",
        },
        headers={"Cache-Control": "no-store"},
    )


async def pay_status(request: Request) -> JSONResponse:
    """The live part of the page as JSON: the fallback for browsers without EventSource."""
    invoice_id = path_id(request, "invoice", name="invoice_id")
    view = await _view(state_of(request), invoice_id, _context(request))
    return JSONResponse(PayerPage.of(view, None).live(), headers={"Cache-Control": "no-store"})


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _unchanged_key(live: dict[str, object]) -> str:
    # The countdown moves every second by itself; only a change of anything else is news.
    return json.dumps({**live, "seconds_left": None}, sort_keys=True)


async def pay_events(request: Request) -> Response:
    invoice_id = path_id(request, "invoice", name="invoice_id")
    state, pages = state_of(request), pages_of(request)
    client = _client(request)
    if pages.hub.ending:
        raise ApiError("unavailable", "the gateway is shutting down", headers={"Retry-After": "2"})
    if not pages.slots.acquire(client):
        raise ApiError(
            "rate_limited",
            f"at most {pages.slots.per_client} live payment pages may be open from one address",
            headers={"Retry-After": "30"},
        )
    await pages.hub.start()
    # Watch before the first read, so a change between the read and the watch is not missed.
    watch = pages.hub.watch(str(invoice_id))

    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            watch.close()
            pages.slots.release(client)

    try:
        view = await _view(state, invoice_id, _context(request))
    except BaseException:
        close()
        raise

    async def stream() -> AsyncIterator[bytes]:
        payer = PayerPage.of(view, None)
        live = payer.live()
        last = _unchanged_key(live)
        yield sse.retry(RECONNECT_MILLISECONDS)
        yield sse.event("status", live)
        ends_at = time.monotonic() + STREAM_MAX_SECONDS
        while not payer.final and not pages.hub.ending and time.monotonic() < ends_at:
            try:
                await asyncio.wait_for(watch.changed.wait(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                if pages.hub.connected:
                    yield sse.comment("still watching")
                    continue
                await pages.hub.start()  # try NATS again; re-read meanwhile
            watch.changed.clear()
            if pages.hub.ending:
                break
            try:
                fresh = await _view(state, invoice_id, _context(request))
            except ApiError as error:
                # The page keeps what it shows and tries again at the next wake-up.
                yield sse.comment(f"invoice service: {error.code}")
                continue
            payer = PayerPage.of(fresh, None)
            live = payer.live()
            if _unchanged_key(live) != last:
                last = _unchanged_key(live)
                yield sse.event("status", live)
        if payer.final:
            # The page stops listening; without this EventSource would reconnect forever.
            yield sse.event("end", {"status": payer.status})

    return sse.EventStream(stream(), on_close=close)


routes = [
    Route("/pay/{invoice_id}", pay_page, methods=["GET"]),
    Route("/pay/{invoice_id}/events", pay_events, methods=["GET"]),
    Route("/pay/{invoice_id}/status", pay_status, methods=["GET"]),
]
