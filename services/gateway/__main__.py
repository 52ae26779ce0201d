"""`python -m services.gateway`: config from the environment, logging, uvicorn.

Uvicorn owns SIGTERM / SIGINT: it stops accepting, lets in-flight requests finish (bounded by
SHUTDOWN_GRACE_SECONDS; the payer pages' open streams are told to end at once), then runs the
lifespan shutdown that closes channels and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from types import FrameType

import uvicorn

from libs.common import gctune, logs, telemetry
from libs.common.config import Config, ConfigError
from libs.common.lifeline import exit_with_parent
from services.gateway.app import create_app
from services.gateway.pages.live import LiveInvoices
from services.gateway.state import GatewayState

SHUTDOWN_GRACE_SECONDS = 20

log = logging.getLogger("checkout.gateway")


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) into its parts."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"CHECKOUT_HTTP_LISTEN must be host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Server(uvicorn.Server):
    """Uvicorn waits for open responses before it stops; the payer pages' live streams never end
    by themselves, so they are told to end as soon as the stop signal arrives."""

    def __init__(self, live: LiveInvoices, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.live = live

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A signal handler interrupts the loop's own code anywhere: hand the work to the loop.
        with contextlib.suppress(RuntimeError):  # not serving yet: no stream to end
            asyncio.get_running_loop().call_soon_threadsafe(self.live.end_all)


def main() -> None:
    try:
        config = Config.from_env()
        host, port = split_listen(config.http_listen)
    except ConfigError as error:
        print(f"gateway: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    exit_with_parent()
    logs.setup("gateway", config.log_format, config.log_level)
    # Spans get real trace ids (carried to the services as `traceparent`) even with no exporter.
    telemetry.setup("gateway")
    log.info("gateway listening on %s:%d", host, port)
    app = create_app(config)
    gctune.tune()
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    server = Server(
        state.live,
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            # The event loop and HTTP parsing in C: pure-Python parsing was the gateway's largest
            # cost per request (issue 10).
            loop="uvloop",
            http="httptools",
            log_config=None,  # keep our handlers; the middleware writes the access log
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        ),
    )
    server.run()


if __name__ == "__main__":
    main()
