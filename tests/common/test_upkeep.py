"""The services' upkeep: idempotency keys are forgotten after their horizon, not kept forever."""

from __future__ import annotations

import dataclasses

from libs.common.config import Config
from services.customer.service import SPEC
from tests.services import running


async def test_idempotency_keys_older_than_the_horizon_are_pruned_and_newer_ones_kept(config: Config) -> None:
    async with running(SPEC, dataclasses.replace(config, idempotency_key_hours=24)) as (runtime, _):
        for _, pool in runtime.pools.items():
            await pool.executemany(
                "INSERT INTO command_log (scope, idempotency_key, request_hash, created_at) "
                "VALUES ($1, $2, 'h', NOW() - make_interval(hours => $3))",
                [("s", "old", 25), ("s", "recent", 23), ("s", "new", 0)],
            )
        # (The service's own upkeep task may already have pruned some: it prunes at start.)
        await runtime.prune_command_log()
        assert await runtime.prune_command_log() == 0
        for _, pool in runtime.pools.items():
            kept = [
                r["idempotency_key"]
                for r in await pool.fetch("SELECT idempotency_key FROM command_log ORDER BY 1")
            ]
            assert kept == ["new", "recent"]
