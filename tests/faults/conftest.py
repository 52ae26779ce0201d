"""Servers of their own for the fault tests, which stop and start them: the session's servers are
shared by every other test. Always embedded (never CHECKOUT_*_URL), so they can be stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace

import pytest

from tests.conftest import make_config
from tests.platform import Platform, platform
from tools.devservers import DATABASE_URL_ENV, NATS_URL_ENV, REDIS_URL_ENV, DevServers


@pytest.fixture(scope="module")
def own_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServers]:
    servers = DevServers(tmp_path_factory.mktemp("own-servers"))
    with pytest.MonkeyPatch.context() as env:
        for name in (DATABASE_URL_ENV, NATS_URL_ENV, REDIS_URL_ENV):
            env.delenv(name, raising=False)
        servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@dataclass
class Faulty:
    """The platform, and the servers under it that a test may stop and start."""

    platform: Platform
    servers: DevServers


@pytest.fixture
async def faulty(own_servers: DevServers) -> AsyncIterator[Faulty]:
    config = replace(
        make_config(own_servers.start()),
        # Quick to notice and quick to recover, so the tests are short.
        loop_grace_seconds=1.0,
        loop_backoff_max_seconds=1.0,
        health_interval_seconds=0.2,
        consumer_retry_seconds=0.2,
        consumer_ack_wait_seconds=2.0,
        # The load creates and reads invoices as fast as it can: a free plan's 600 a minute is
        # over within a minute on a quick machine, and rate limits are not what is under test.
        rate_limit_free="60000/minute",
    )
    async with platform(config) as started:
        yield Faulty(started, own_servers)
