"""Real receivers on loopback for the webhook and notification tests: an HTTP server that answers
from a script and records every request, and an SMTP server (aiosmtpd) that keeps every mail."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc

from libs.common import ids
from libs.common.messaging import Envelope, subject
from tests.common.eventsource import merchant_on_shard


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic()
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    """A minimal HTTP/1.1 server: one request per connection, answered from `script` in order
    (then `default`)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self.port = 0
        self._server: asyncio.Server | None = None

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").strip()
            if not request_line:
                return
            method, path, _ = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(time.monotonic(), method, path, headers, body))
            reply = self.script.pop(0) if self.script else self.default
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
            writer.write(
                f"HTTP/1.1 {reply.status} X\r\nContent-Length: {len(reply.body)}\r\n"
                f"Connection: close\r\n{extra}\r\n".encode()
                + reply.body
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    started = Receiver()
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


@asynccontextmanager
async def mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(box), "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


async def new_merchant(stub: Any, config: Any, shard: int = 0, tag: str = "hooks") -> uuid.UUID:
    """A merchant created through the service, living on `shard`."""
    merchant_id, email = merchant_on_shard(config, shard, tag)
    created = await stub.CreateMerchant(
        pb.CreateMerchantRequest(merchant_id=str(merchant_id), business_name="Hook Shop", contact_email=email)
    )
    parsed = ids.parse_id(created.id)
    assert parsed is not None
    return parsed


def stub_of(channel: Any) -> Any:
    return merchant_pb2_grpc.MerchantServiceStub(channel)


async def publish(
    js: Any, config: Any, *, event_type: str, data: dict[str, Any], aggregate_id: uuid.UUID
) -> uuid.UUID:
    """Publishes an invoice event the way the relay does, by type name and JSON alone (for types
    whose proto this test does not need to know)."""
    event_id = ids.new_id(ids.slot_of(aggregate_id))
    shard = config.shard_map().shard_for_slot(ids.slot_of(aggregate_id))
    envelope = Envelope(
        id=event_id,
        type=event_type,
        aggregate_id=aggregate_id,
        aggregate_type="Invoice",
        version=2,
        shard=shard,
        occurred_at=dt.datetime.now(dt.UTC),
        data=data,
        metadata={},
    )
    await js.publish(
        subject(config.subject_prefix, shard, event_type), envelope.to_bytes(), headers=envelope.headers()
    )
    return event_id
