"""What the pages share across requests beyond the gateway's own state: the bound on open live
streams and the dashboard's sessions."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from libs.common.config import Config
from services.gateway.pages.session import SessionStore
from services.gateway.pages.sse import StreamSlots


@dataclass
class PagesState:
    slots: StreamSlots
    sessions: SessionStore
    secure_cookies: bool

    @classmethod
    def from_config(cls, config: Config) -> PagesState:
        # Nothing connects here: Redis on the first sign-in.
        return cls(
            slots=StreamSlots(),
            sessions=SessionStore(config.redis_url, config.dashboard_session_seconds),
            secure_cookies=config.public_url().startswith("https://"),
        )

    async def close(self) -> None:
        await self.sessions.close()


def pages_of(conn: HTTPConnection) -> PagesState:
    pages = conn.app.state.pages
    assert isinstance(pages, PagesState)
    return pages
