"""Moving slots between two real PostgreSQL shards while merchants keep creating invoices: the
copy, the catch-up, the fence and the switch, end to end through the in-process platform."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from libs.common import slotmove_control
from libs.common.config import Config
from libs.common.shardstore import load
from libs.common.slotmove import COPIED_XID
from libs.common.slotmove_catalog import SlotRange
from libs.common.slotmover import SlotMover
from tests.conftest import make_config
from tests.platform import platform
from tests.shards.support import Writer, assert_moved, control_store, create_invoice, rows_in, shops_in
from tools.devservers import Servers

MOVING = SlotRange(0, 1023)  # the first half of shard 0's slots (of two shards)


@pytest.fixture
def config(servers: Servers) -> Config:
    """The moves here are run by the test's own mover (or a process of its own), not the
    merchant service's loop."""
    return make_config(servers, slot_mover=False)


STAYING = SlotRange(1024, 2047)


async def test_a_move_under_writes_switches_the_map_and_loses_nothing(
    config: Config, nats_client: NatsClient
) -> None:
    async with platform(config) as p:
        moving = await shops_in(p, MOVING, 2)
        (staying,) = await shops_in(p, STAYING, 1)
        for shop in [*moving, staying]:
            for _ in range(3):
                assert (await create_invoice(p.http, shop)).status_code == 201
        async with control_store(config) as control:
            move = await slotmove_control.create_move(control, MOVING, to_shard=1)
            assert (move.from_shard, move.phase) == (0, "copying")
            async with Writer(p.http, moving) as writer:
                await writer.writes_on()
                done = await SlotMover(config, nats_client.jetstream()).run_once()
                await writer.writes_on()
            shard_map, _ = await load(control)

        assert done is not None and done.phase == "done", done
        assert writer.failures == []
        assert done.fence_ms is not None and done.fence_ms < 1000
        assert done.map_version == 2 == shard_map.version
        assert {shard_map.shard_for_slot(s) for s in (MOVING.first, MOVING.last)} == {1}
        assert shard_map.shard_for_slot(STAYING.first) == 0

        await assert_moved(p, moving, [staying], MOVING, to=1, source=0)
        assert (await rows_in(config.shard_dsn(0), STAYING))["invoice.invoices"] == len(staying.invoices)

        # The copied events kept their order and were not published again by the target.
        target = await asyncpg.connect(config.shard_dsn(1))
        try:
            rows = await target.fetch(
                "SELECT aggregate_id, event_version, transaction_id::text::bigint AS xid FROM invoice.events "
                "WHERE aggregate_id = ANY($1::uuid[]) ORDER BY sequence_number",
                [uuid.UUID(i) for s in moving for i in s.invoices],
            )
        finally:
            await target.close()
        versions: dict[uuid.UUID, int] = {}
        for row in rows:
            assert row["event_version"] == versions.get(row["aggregate_id"], 0) + 1
            versions[row["aggregate_id"]] = row["event_version"]
        assert any(r["xid"] == COPIED_XID for r in rows) and any(r["xid"] > COPIED_XID for r in rows)
