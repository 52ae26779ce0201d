"""A service process: `python -m services.<name> [serve|migrate]` (and `checkout-service <name>
...`): configuration from the environment, logs and telemetry, then either the migrations alone
or the runtime (libs/common/service.py) served until SIGTERM/SIGINT and stopped gracefully."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from libs.common import gctune, logs, telemetry
from libs.common.composition import ServiceSpec
from libs.common.config import Config
from libs.common.lifeline import exit_with_parent
from libs.common.service import Runtime

log = logging.getLogger("checkout.service")


def main(spec: ServiceSpec, argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """`python -m services.<name> [serve|migrate]` (and `checkout-service <name> ...`)."""
    parser = argparse.ArgumentParser(prog=prog or f"python -m services.{spec.name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    config = Config.from_env()
    exit_with_parent()
    logs.setup(spec.name, config.log_format, config.log_level)
    telemetry.setup(spec.name)
    if config.metrics_listen and args.command == "serve":
        telemetry.serve_metrics(config.metrics_listen)
    runtime = Runtime(spec, config)
    if args.command == "migrate":

        async def run_migrations() -> None:
            await runtime.migrate()
            await runtime.pools.close()
            await runtime.directory.close()

        asyncio.run(run_migrations())
        return
    sys.exit(asyncio.run(_serve(runtime)))


async def _serve(runtime: Runtime) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
    except Exception:
        log.exception("%s failed to start", runtime.spec.name)
        await runtime.stop()
        return 1
    log.info("%s serving shards %s", runtime.spec.name, runtime.shards)
    gctune.tune()
    await stop.wait()
    log.info("%s shutting down", runtime.spec.name)
    await runtime.stop()
    return 0
