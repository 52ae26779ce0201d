"""A slot move survives its mover: killed (SIGKILL) at each phase and resumed, it ends as an
uninterrupted one does; aborted mid-copy, it leaves the source authoritative and the target clean."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from libs.common import slotmove_control
from libs.common.config import Config
from libs.common.shardstore import load
from libs.common.slotmove_catalog import SlotRange
from libs.common.slotmover import SlotMover
from tests.conftest import make_config
from tests.platform import platform
from tests.shards.support import (
    Writer,
    assert_moved,
    control_store,
    counted_once,
    rows_in,
    shops_with_invoices,
)
from tools.devservers import Servers

ROOT = Path(__file__).resolve().parents[2]
MOVING = SlotRange(0, 1023)


@pytest.fixture
def config(servers: Servers) -> Config:
    """The moves here are run by the test's own mover (or a process of its own), not the
    merchant service's loop."""
    return make_config(servers, slot_mover=False)


def mover_env(config: Config, crash_at: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKOUT_")}
    env.update(
        {
            "CHECKOUT_DATABASE_URL": config.database_url,
            "CHECKOUT_DATABASE_PREFIX": config.database_prefix,
            "CHECKOUT_SHARD_COUNT": str(config.shard_count),
            "CHECKOUT_NATS_URL": config.nats_url,
            "CHECKOUT_STREAM_NAME": config.stream_name,
            "CHECKOUT_SUBJECT_PREFIX": config.subject_prefix,
            "CHECKOUT_SLOT_MOVE_BATCH": "5",
            "CHECKOUT_SLOT_MOVER_CRASH_AT": crash_at,
        }
    )
    return env


async def killed_mover(config: Config, crash_at: str, tmp_path: Path) -> None:
    """Runs the mover in a process of its own until it kills itself (SIGKILL) at `crash_at`."""
    with (tmp_path / "mover.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "libs.common.slotmover",
            "--once",
            cwd=ROOT,
            env=mover_env(config, crash_at),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            code = await asyncio.wait_for(process.wait(), 120)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert code == -signal.SIGKILL, (tmp_path / "mover.log").read_text()


@pytest.mark.parametrize("crash_at", ["copying:3", "catching_up:1", "fencing:1", "fencing:2", "cleaning:1"])
async def test_a_mover_killed_at_any_phase_is_resumed_to_the_same_result(
    config: Config, nats_client: NatsClient, tmp_path: Path, crash_at: str
) -> None:
    async with platform(config) as p, control_store(config) as control:
        moving = await shops_with_invoices(p, MOVING, 2, invoices=4)
        move = await slotmove_control.create_move(control, MOVING, to_shard=1)
        async with Writer(p.http, moving) as writer:
            await killed_mover(config, crash_at, tmp_path)
            died = await slotmove_control.get_move(control, move.id)
            assert died is not None and died.phase == crash_at.split(":")[0]
            done = await SlotMover(config, nats_client.jetstream()).run_once()
            await writer.writes_on()
        shard_map, _ = await load(control)
        assert done is not None and done.phase == "done", done
        assert writer.failures == []
        assert shard_map.shard_for_slot(MOVING.first) == 1
        await assert_moved(p, moving, [], MOVING, to=1, source=0)


async def test_an_abort_mid_copy_leaves_the_source_authoritative(
    config: Config, nats_client: NatsClient, tmp_path: Path
) -> None:
    async with platform(config) as p, control_store(config) as control:
        moving = await shops_with_invoices(p, MOVING, 2, invoices=4)
        move = await slotmove_control.create_move(control, MOVING, to_shard=1)
        async with Writer(p.http, moving) as writer:
            await killed_mover(config, "copying:3", tmp_path)
            assert (await rows_in(config.shard_dsn(1), MOVING)) != {}  # a part was copied
            asked = await slotmove_control.request(control, move.id, "abort")
            assert asked is not None and asked.abort_requested
            aborted = await SlotMover(config, nats_client.jetstream()).run_once()
            await writer.writes_on()
        shard_map, _ = await load(control)
        with pytest.raises(slotmove_control.MoveConflict):
            await slotmove_control.request(control, move.id, "resume")
        assert aborted is not None and aborted.phase == "aborted", aborted
        assert writer.failures == []
        assert shard_map.version == 1
        assert await rows_in(config.shard_dsn(1), MOVING) == {}
        on_source = await rows_in(config.shard_dsn(0), MOVING)
        assert on_source["invoice.invoices"] == sum(len(s.invoices) for s in moving)
        for shop in moving:
            await counted_once(p, shop)
