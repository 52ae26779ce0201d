"""One webhook receiver per merchant: a small HTTP/1.1 server on loopback that answers 200 at once
and counts every `Checkout-Event-Id` it is sent (a second one of an id is a duplicate, which the
platform allows and the suite reports)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

MAX_BODY_BYTES = 1 << 20


class Receiver:
    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Kept-alive connections end their handlers by EOF, not by cancellation at exit.
            handlers = list(self._connections.values())
            for writer in list(self._connections):
                writer.close()
            await asyncio.wait(handlers, timeout=5) if handlers else None
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        try:
            while True:  # keep-alive: several requests may come on one connection
                request_line = await reader.readline()
                if not request_line.strip():
                    return
                headers: dict[str, str] = {}
                while (line := (await reader.readline()).decode("latin-1").strip()) != "":
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = min(int(headers.get("content-length", "0") or 0), MAX_BODY_BYTES)
                await reader.readexactly(length)
                if event_id := headers.get("checkout-event-id"):
                    self.received[event_id] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._connections.pop(writer, None)
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()
