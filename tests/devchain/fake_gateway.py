"""A loopback stand-in for the gateway's public checkout route, for tools.pay's tests.

Answers `GET /v1/checkout/{id}` with the view a test keeps (or computes) in the gateway's
format (services/gateway/render.py `checkout`), and 404 in the gateway's error format otherwise.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

View = dict[str, Any]


def checkout_view(
    invoice_id: str,
    *,
    crypto_currency: str,
    crypto_amount: str,
    payment_address: str,
    payment_uri: str,
    amount_paid: str = "0",
    status: str = "pending",
) -> View:
    return {
        "id": invoice_id,
        "title": "Coffee beans",
        "status": status,
        "total": "25.00",
        "currency": "USD",
        "crypto_currency": crypto_currency,
        "crypto_amount": crypto_amount,
        "amount_paid": amount_paid,
        "payment_address": payment_address,
        "payment_uri": payment_uri,
        "expires_at": "2030-01-01T00:00:00Z",
    }


@dataclass
class FakeGateway:
    url: str = ""
    # A fixed view, or a coroutine computing it on each request (to follow the chain).
    views: dict[str, View | Callable[[], Awaitable[View]]] = field(default_factory=dict)
    requests: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            self.requests += 1
            prefix = "/v1/checkout/"
            found = self.views.get(path.removeprefix(prefix)) if path.startswith(prefix) else None
            if method != "GET" or found is None:
                status, body = "404 Not Found", {"error": {"code": "not_found", "message": "no such invoice"}}
            else:
                status, body = "200 OK", found if isinstance(found, dict) else await found()
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def fake_gateway() -> AsyncIterator[FakeGateway]:
    gateway = FakeGateway()
    server = await asyncio.start_server(gateway._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gateway.url = f"http://127.0.0.1:{port}"
    async with server:
        yield gateway
