"""`Client` (sync) and `AsyncClient`: the same operations (checkout_client.calls), each sent with
the shared retry policy. A list method returns one page; `iter_*` follows `next_cursor`."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, cast

import httpx

from checkout_client import calls
from checkout_client._core import (
    DEFAULT_TIMEOUT,
    Call,
    RetryPolicy,
    client_headers,
    result,
    transport_error,
)
from checkout_client.types import (
    JSON,
    ApiKey,
    Checkout,
    Invoice,
    Merchant,
    Page,
    RegisteredShard,
    RetriedDeadLetter,
    Shards,
    SlotMove,
    WebhookEndpoint,
)

PageCall = Callable[[str | None], Call]


class Client:
    """`Client(base_url, token)`: a merchant's secret API key, or the operator token for the
    operator's calls. `transport` is httpx's (tests may pass one); `retry` the retry policy."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=base_url, headers=client_headers(token), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call) -> Any:
        """One call, retried on 429/503 (waiting `Retry-After`) and on a failed connection."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=call.timeout_or(self.timeout),
                )
            except httpx.TransportError as error:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise transport_error(error) from error
            else:
                wait = self.retry.delay(attempt, response)
                if wait is None:
                    return result(response)
            time.sleep(wait)
            attempt += 1

    def pages(self, page: PageCall) -> Iterator[JSON]:
        cursor: str | None = None
        while True:
            answer = self.send(page(cursor))
            yield from answer["data"]
            cursor = answer.get("next_cursor")
            if not cursor:
                return

    # --- invoices
    def create_invoice(self, idempotency_key: str | None = None, **fields: Any) -> Invoice:
        return cast(Invoice, self.send(calls.create_invoice(calls.body(**fields), idempotency_key)))

    def get_invoice(self, invoice_id: str) -> Invoice:
        return cast(Invoice, self.send(calls.get_invoice(invoice_id)))

    def list_invoices(self, **filters: Any) -> Page[Invoice]:
        return cast(Page[Invoice], self.send(calls.list_invoices(**filters)))

    def iter_invoices(self, **filters: Any) -> Iterator[Invoice]:
        return cast(Iterator[Invoice], self.pages(lambda c: calls.list_invoices(**filters, cursor=c)))

    def cancel_invoice(self, invoice_id: str, idempotency_key: str | None = None) -> Invoice:
        return cast(Invoice, self.send(calls.cancel_invoice(invoice_id, idempotency_key)))

    def create_refund(self, invoice_id: str, idempotency_key: str | None = None, **fields: Any) -> JSON:
        return cast(JSON, self.send(calls.create_refund(invoice_id, calls.body(**fields), idempotency_key)))

    def cancel_refund(self, invoice_id: str, refund_id: str, idempotency_key: str | None = None) -> JSON:
        return cast(JSON, self.send(calls.cancel_refund(invoice_id, refund_id, idempotency_key)))

    def checkout(self, invoice_id: str) -> Checkout:
        return cast(Checkout, self.send(calls.checkout(invoice_id)))

    def iter_customers(self, email: str | None = None) -> Iterator[JSON]:
        return self.pages(lambda c: calls.list_customers(email, cursor=c))

    # --- exports and the event feed
    def export(
        self, kind: str, start: dt.date | str | None = None, end: dt.date | str | None = None
    ) -> Iterator[bytes]:
        """`GET /v1/exports/<kind>.csv` as it streams (chunks of bytes): write them to a file."""
        call = calls.export(kind, start, end)
        with self._http.stream(call.method, call.path, params=call.params) as response:
            if not response.is_success:
                response.read()
                result(response)
            yield from response.iter_bytes()

    def events(
        self,
        after: str | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        wait: int | None = None,
    ) -> Page[JSON]:
        """One page of the event feed after the cursor `after` (an event's `cursor`); with `wait`
        (seconds, at most 30) an empty page waits for the next event."""
        return cast(Page[JSON], self.send(calls.events(after, types, limit, wait)))

    def iter_events(self, after: str | None = None, types: Sequence[str] | None = None) -> Iterator[JSON]:
        """Every event after the cursor, to the end of the feed (`next_cursor` is the next `after`)."""
        return self.pages(lambda c: calls.events(c or after, types, None))

    # --- webhooks
    def create_webhook_endpoint(self, idempotency_key: str | None = None, **fields: Any) -> WebhookEndpoint:
        call = calls.create_webhook_endpoint(calls.body(**fields), idempotency_key)
        return cast(WebhookEndpoint, self.send(call))

    # --- the operator's
    def create_merchant(self, idempotency_key: str | None = None, **fields: Any) -> Merchant:
        return cast(Merchant, self.send(calls.create_merchant(calls.body(**fields), idempotency_key)))

    def get_merchant(self, merchant_id: str) -> Merchant:
        return cast(Merchant, self.send(calls.get_merchant(merchant_id)))

    def update_merchant(self, merchant_id: str, **fields: Any) -> Merchant:
        return cast(Merchant, self.send(calls.update_merchant(merchant_id, calls.body(**fields))))

    def iter_merchants(self) -> Iterator[Merchant]:
        return cast(Iterator[Merchant], self.pages(lambda c: calls.list_merchants(cursor=c)))

    def create_api_key(self, merchant_id: str, idempotency_key: str | None = None, **fields: Any) -> ApiKey:
        call = calls.create_api_key(merchant_id, calls.body(**fields), idempotency_key)
        return cast(ApiKey, self.send(call))

    def list_api_keys(self) -> Page[ApiKey]:
        return cast(Page[ApiKey], self.send(calls.list_api_keys()))

    def revoke_api_key(self, key_id: str) -> ApiKey:
        return cast(ApiKey, self.send(calls.revoke_api_key(key_id)))

    def shards(self) -> Shards:
        return cast(Shards, self.send(calls.shards()))

    def register_shard(self, dsn: str, tier: str | None = None) -> RegisteredShard:
        return cast(RegisteredShard, self.send(calls.register_shard(dsn, tier)))

    def create_slot_move(self, slots: str, to_shard: int) -> SlotMove:
        return cast(SlotMove, self.send(calls.create_slot_move(slots, to_shard)))

    def slot_move(self, move_id: str, action: str | None = None) -> SlotMove:
        """The move; with `action` (pause, resume, abort), after asking for it."""
        return cast(SlotMove, self.send(calls.slot_move(move_id, action)))

    def slot_moves(self) -> list[SlotMove]:
        return cast(list[SlotMove], self.send(calls.slot_moves())["data"])

    def iter_dead_letters(self, **filters: Any) -> Iterator[JSON]:
        return self.pages(lambda c: calls.list_dead_letters(**filters, cursor=c))

    def retry_dead_letter(self, letter_id: str) -> RetriedDeadLetter:
        return cast(RetriedDeadLetter, self.send(calls.retry_dead_letter(letter_id, None)))


class AsyncClient:
    """`Client`'s async twin: the same arguments, the same operations, awaited."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=client_headers(token), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=call.timeout_or(self.timeout),
                )
            except httpx.TransportError as error:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise transport_error(error) from error
            else:
                wait = self.retry.delay(attempt, response)
                if wait is None:
                    return result(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def pages(self, page: PageCall) -> AsyncIterator[JSON]:
        cursor: str | None = None
        while True:
            answer = await self.send(page(cursor))
            for item in answer["data"]:
                yield item
            cursor = answer.get("next_cursor")
            if not cursor:
                return

    async def create_invoice(self, idempotency_key: str | None = None, **fields: Any) -> Invoice:
        return cast(Invoice, await self.send(calls.create_invoice(calls.body(**fields), idempotency_key)))

    async def get_invoice(self, invoice_id: str) -> Invoice:
        return cast(Invoice, await self.send(calls.get_invoice(invoice_id)))

    async def list_invoices(self, **filters: Any) -> Page[Invoice]:
        return cast(Page[Invoice], await self.send(calls.list_invoices(**filters)))

    def iter_invoices(self, **filters: Any) -> AsyncIterator[Invoice]:
        return cast(AsyncIterator[Invoice], self.pages(lambda c: calls.list_invoices(**filters, cursor=c)))

    async def cancel_invoice(self, invoice_id: str, idempotency_key: str | None = None) -> Invoice:
        return cast(Invoice, await self.send(calls.cancel_invoice(invoice_id, idempotency_key)))

    async def create_refund(self, invoice_id: str, idempotency_key: str | None = None, **fields: Any) -> JSON:
        call = calls.create_refund(invoice_id, calls.body(**fields), idempotency_key)
        return cast(JSON, await self.send(call))

    async def cancel_refund(
        self, invoice_id: str, refund_id: str, idempotency_key: str | None = None
    ) -> JSON:
        return cast(JSON, await self.send(calls.cancel_refund(invoice_id, refund_id, idempotency_key)))

    async def checkout(self, invoice_id: str) -> Checkout:
        return cast(Checkout, await self.send(calls.checkout(invoice_id)))

    async def export(
        self, kind: str, start: dt.date | str | None = None, end: dt.date | str | None = None
    ) -> AsyncIterator[bytes]:
        call = calls.export(kind, start, end)
        async with self._http.stream(call.method, call.path, params=call.params) as response:
            if not response.is_success:
                await response.aread()
                result(response)
            async for chunk in response.aiter_bytes():
                yield chunk

    async def events(
        self,
        after: str | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        wait: int | None = None,
    ) -> Page[JSON]:
        return cast(Page[JSON], await self.send(calls.events(after, types, limit, wait)))

    def iter_events(
        self, after: str | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[JSON]:
        return self.pages(lambda c: calls.events(c or after, types, None))

    async def create_webhook_endpoint(
        self, idempotency_key: str | None = None, **fields: Any
    ) -> WebhookEndpoint:
        call = calls.create_webhook_endpoint(calls.body(**fields), idempotency_key)
        return cast(WebhookEndpoint, await self.send(call))

    async def create_merchant(self, idempotency_key: str | None = None, **fields: Any) -> Merchant:
        return cast(Merchant, await self.send(calls.create_merchant(calls.body(**fields), idempotency_key)))

    async def create_api_key(
        self, merchant_id: str, idempotency_key: str | None = None, **fields: Any
    ) -> ApiKey:
        call = calls.create_api_key(merchant_id, calls.body(**fields), idempotency_key)
        return cast(ApiKey, await self.send(call))

    async def shards(self) -> Shards:
        return cast(Shards, await self.send(calls.shards()))

    async def register_shard(self, dsn: str, tier: str | None = None) -> RegisteredShard:
        return cast(RegisteredShard, await self.send(calls.register_shard(dsn, tier)))

    async def create_slot_move(self, slots: str, to_shard: int) -> SlotMove:
        return cast(SlotMove, await self.send(calls.create_slot_move(slots, to_shard)))

    async def slot_move(self, move_id: str, action: str | None = None) -> SlotMove:
        """The move; with `action` (pause, resume, abort), after asking for it."""
        return cast(SlotMove, await self.send(calls.slot_move(move_id, action)))
