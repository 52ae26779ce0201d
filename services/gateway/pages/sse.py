"""Server-sent events: the wire format, a bound on open streams, and a response that ends when
the client goes away.

Starlette's StreamingResponse only notices a closed connection at its next write under ASGI
2.4 (uvicorn's), so a closed tab would keep its slot until the next heartbeat; this response
listens for `http.disconnect` alongside the stream and stops it at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from libs.common import limits


def event(name: str, data: bytes) -> bytes:
    """One SSE message of compact JSON: one line, so a single `data:` field carries it."""
    assert b"\n" not in data
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def retry(milliseconds: int) -> bytes:
    """How long EventSource waits before it reconnects after the stream ends or breaks."""
    return f"retry: {milliseconds}\n\n".encode()


class StreamSlots:
    """Open streams, counted per client address and in all."""

    def __init__(
        self,
        per_client: int = limits.PAGE_STREAMS_PER_CLIENT_MAX,
        total: int = limits.PAGE_STREAMS_MAX,
    ) -> None:
        self.per_client = per_client
        self.total = total
        self._open: Counter[str] = Counter()

    def acquire(self, client: str) -> bool:
        if self._open[client] >= self.per_client or self._open.total() >= self.total:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    def open_for(self, client: str) -> int:
        return self._open[client]


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        on_close: Callable[[], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.init_headers(
            {
                "Cache-Control": "no-store",
                # Proxies (nginx) buffer responses by default; an event must go out at once.
                "X-Accel-Buffering": "no",
                **(headers or {}),
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def until_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(until_disconnect)
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                async for chunk in self.chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass  # the client went away mid-write
            finally:
                group.cancel_scope.cancel()
                # The stream's resources go back now, not at GC.
                aclose = getattr(self.chunks, "aclose", None)
                try:
                    if aclose is not None:
                        with anyio.CancelScope(shield=True):
                            await aclose()
                finally:
                    self.on_close()
