"""A service's composition root (libs/common/composition.py): the runtime builds it once, runs
what it returns, and on stop runs its close hooks newest first, after every loop has stopped and
while the pools are still open."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from libs.common.composition import Built
from libs.common.config import Config
from libs.common.service import Runtime
from libs.common.supervise import Loop
from services.customer.service import SPEC
from services.invoice.service import InvoiceBuilt
from tests.common.support import poll
from tests.services import running


async def test_close_hooks_run_newest_first_after_the_loops_stop_and_before_the_pools_close(
    config: Config,
) -> None:
    happened: list[str] = []
    builds: list[Runtime] = []
    started = asyncio.Event()

    async def worker() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            happened.append("loop stopped")

    def build(runtime: Runtime) -> Built:
        builds.append(runtime)

        async def first() -> None:
            shard, pool = next(iter(runtime.pools.items()))
            happened.append(f"first closed, shard {shard} answers {await pool.fetchval('SELECT 1')}")

        async def second() -> None:
            happened.append("second closed")
            raise RuntimeError("a failing hook does not keep the others from running")

        built = SPEC.build(runtime)
        return dataclasses.replace(
            built,
            background=[*built.background, Loop("worker", worker)],
            close=[*built.close, first, second],
        )

    async with running(dataclasses.replace(SPEC, build=build), config) as (runtime, _):
        await poll(started.is_set, what="the built loop to run")
        assert runtime.build() is runtime.built  # built once, at start
        shard = runtime.shards[0]
    assert builds == [runtime]
    assert happened == ["loop stopped", "second closed", f"first closed, shard {shard} answers 1"]


async def test_a_services_own_kind_of_built_is_read_from_its_runtime(config: Config) -> None:
    runtime = Runtime(SPEC, config)
    with pytest.raises(RuntimeError, match="has not built"):
        runtime.built  # noqa: B018  # the property is what is tested
    async with running(SPEC, config) as (started, _):
        with pytest.raises(TypeError, match="not a InvoiceBuilt"):
            InvoiceBuilt.of(started)
        assert Built.of(started) is started.built
