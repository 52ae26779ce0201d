"""What the pages share across requests: the live-update hub, the stream bounds, the sessions."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from libs.common.config import Config
from services.gateway.pages.live import LiveInvoices
from services.gateway.pages.session import SessionStore
from services.gateway.pages.sse import StreamSlots


@dataclass
class PagesState:
    hub: LiveInvoices
    slots: StreamSlots
    sessions: SessionStore
    secure_cookies: bool

    @classmethod
    def from_config(cls, config: Config) -> PagesState:
        # Nothing connects here: NATS on the first live page, Redis on the first sign-in.
        return cls(
            hub=LiveInvoices(config.nats_url, config.subject_prefix),
            slots=StreamSlots(),
            sessions=SessionStore(config.redis_url, config.dashboard_session_seconds),
            secure_cookies=config.public_url().startswith("https://"),
        )

    def end_streams(self) -> None:
        """The server is stopping: let every open live page end now rather than at its timeout."""
        self.hub.end_all()

    async def close(self) -> None:
        await self.hub.close()
        await self.sessions.close()


def pages_of(conn: HTTPConnection) -> PagesState:
    pages = conn.app.state.pages
    assert isinstance(pages, PagesState)
    return pages
