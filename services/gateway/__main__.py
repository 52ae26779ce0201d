"""`python -m services.gateway`: config from the environment, logging, uvicorn.

Uvicorn owns SIGTERM / SIGINT: it stops accepting, lets in-flight requests finish (bounded by
SHUTDOWN_GRACE_SECONDS), then runs the lifespan shutdown that closes channels and Redis.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from libs.common import logs, telemetry
from libs.common.config import Config, ConfigError
from libs.common.lifeline import exit_with_parent
from services.gateway.app import create_app

SHUTDOWN_GRACE_SECONDS = 20

log = logging.getLogger("checkout.gateway")


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) into its parts."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"CHECKOUT_HTTP_LISTEN must be host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


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
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
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
        )
    )
    server.run()


if __name__ == "__main__":
    main()
