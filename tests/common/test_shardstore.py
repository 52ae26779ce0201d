"""The control store on a real PostgreSQL: bootstrap, compare-and-set publishing, the registry,
and directories that hear a new version by NOTIFY, or find it by polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from libs.common.config import Config, ConfigError
from libs.common.shardmap import ShardMap, SlotRange
from libs.common.shardstore import (
    MapConflict,
    RegistryError,
    ShardDirectory,
    ShardInfo,
    ensure_control,
    load,
    publish_map,
    redact_dsn,
    register_shard,
)


@pytest.fixture
async def control(config: Config) -> AsyncIterator[asyncpg.Connection]:
    await ensure_control(config)
    conn = await asyncpg.connect(config.control_database())
    yield conn
    await conn.close()


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)


async def test_a_fresh_control_store_holds_the_configured_shards_as_version_one(config: Config) -> None:
    await asyncio.gather(*(ensure_control(config) for _ in range(3)))  # every process at once
    conn = await asyncpg.connect(config.control_database())
    try:
        shard_map, shards = await load(conn)
        assert await conn.fetchval("SELECT count(*) FROM control.shard_maps") == 1
    finally:
        await conn.close()
    assert shard_map == ShardMap.even(2)
    assert shards == {
        0: ShardInfo(0, config.shard_dsn(0), "shared"),
        1: ShardInfo(1, config.shard_dsn(1), "shared"),
    }


async def test_publishing_from_a_stale_version_is_refused(control: asyncpg.Connection) -> None:
    moved = ShardMap.even(2).reassign(0, 512, 1)
    published = await publish_map(control, 1, moved, "slots 0-511 to shard 1")
    assert published.version == 2 and published.ranges == moved.ranges
    with pytest.raises(MapConflict) as refused:
        await publish_map(control, 1, ShardMap.even(2), "from an old view")
    assert (refused.value.expected, refused.value.actual) == (1, 2)
    assert (await load(control))[0] == published


async def test_two_publishers_from_one_version_make_one_next_version(config: Config) -> None:
    await ensure_control(config)
    conns = [await asyncpg.connect(config.control_database()) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(publish_map(c, 1, ShardMap.even(2).reassign(0, 8, n), f"by {n}") for n, c in enumerate(conns)),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["MapConflict", "ShardMap"]
        assert await conns[0].fetchval("SELECT max(version) FROM control.shard_maps") == 2
    finally:
        for conn in conns:
            await conn.close()


async def test_a_map_may_only_name_registered_shards(control: asyncpg.Connection) -> None:
    with pytest.raises(RegistryError, match=r"unregistered shard\(s\) \[2\]"):
        await publish_map(control, 1, ShardMap.even(3), "a third shard nobody added")
    info = await register_shard(control, "postgresql://checkout:s3cret@db3:5432/shard_2", "enterprise")
    assert info == ShardInfo(2, "postgresql://checkout:s3cret@db3:5432/shard_2", "enterprise")
    assert (await publish_map(control, 1, ShardMap.even(3), "third shard")).version == 2


async def test_a_database_is_registered_once(config: Config, control: asyncpg.Connection) -> None:
    with pytest.raises(RegistryError, match="already shard 1"):
        await register_shard(control, config.shard_dsn(1), "pro")
    assert len((await load(control))[1]) == 2


def test_a_dsn_shown_to_an_operator_has_no_password() -> None:
    assert redact_dsn("postgresql://checkout:s3cret@db:5432/x") == "postgresql://checkout:***@db:5432/x"
    assert redact_dsn("postgresql://postgres@127.0.0.1/x") == "postgresql://postgres@127.0.0.1/x"


async def test_a_directory_hears_a_new_version_and_a_new_shard_by_notification(
    config: Config, control: asyncpg.Connection
) -> None:
    directory = ShardDirectory(config, poll_seconds=600)  # only a notification can wake it
    heard: list[int] = []

    async def on_change(shard_map: ShardMap) -> None:
        heard.append(shard_map.version)

    directory.subscribe(on_change)
    await directory.open()
    runner = asyncio.create_task(directory.run())
    try:
        await register_shard(control, config.shard_dsn(2), "pro")
        await eventually(lambda: 2 in directory.shards)
        moved = await publish_map(control, 1, ShardMap.even(2).reassign(0, 100, 2), "to the new shard")
        await eventually(lambda: directory.current == moved)
        assert heard == [1, 2]
        assert directory.current.shard_for_slot(99) == 2
    finally:
        runner.cancel()
        await directory.close()


async def test_a_directory_that_missed_the_notification_finds_the_version_by_polling(
    config: Config, control: asyncpg.Connection
) -> None:
    directory = ShardDirectory(config, poll_seconds=0.1)
    await directory.open()
    runner = asyncio.create_task(directory.run())
    try:
        # As a publish whose NOTIFY went out while the directory's connection was down.
        await control.execute(
            "INSERT INTO control.shard_maps (version, ranges, reason) VALUES (2, $1::jsonb, 'x')",
            "[[0, 4096, 1]]",
        )
        await eventually(lambda: directory.current.version == 2)
        assert directory.current.ranges == (SlotRange(0, 4096, 1),)
    finally:
        runner.cancel()
        await directory.close()


async def test_a_directory_before_the_store_is_read_routes_as_the_configuration_says(config: Config) -> None:
    directory = ShardDirectory(config)
    assert directory.current == ShardMap.even(2)
    assert directory.shards[1].dsn == config.shard_dsn(1)


def test_reassigning_slots_merges_the_neighbouring_ranges_of_one_shard() -> None:
    shard_map = ShardMap.even(2).reassign(2048, 3072, 2)
    assert shard_map.ranges == (SlotRange(0, 2048, 0), SlotRange(2048, 3072, 2), SlotRange(3072, 4096, 1))
    assert shard_map.reassign(2048, 3072, 0).ranges == (SlotRange(0, 3072, 0), SlotRange(3072, 4096, 1))
    with pytest.raises(ValueError, match="not within"):
        shard_map.reassign(10, 10, 1)


def test_the_control_store_is_shard_zeros_database_unless_one_is_named() -> None:
    default = Config.from_env({"CHECKOUT_SHARD_DSNS": "postgresql://a/s0,postgresql://b/s1"})
    assert default.control_database() == "postgresql://a/s0"
    named = Config.from_env({"CHECKOUT_CONTROL_DSN": "postgresql://c/control"})
    assert named.control_database() == "postgresql://c/control"
    # A service may be told to serve a shard an operator has not registered yet.
    assert Config.from_env({"CHECKOUT_SERVED_SHARDS": "2"}).served_shards == {2}


def test_a_placement_policy_that_names_no_plan_fails_at_start_up_with_its_variable() -> None:
    assert Config.from_env({"CHECKOUT_PLACEMENT": '{"pro": "pro"}'}).placement == {"pro": "pro"}
    with pytest.raises(ConfigError, match="CHECKOUT_PLACEMENT"):
        Config.from_env({"CHECKOUT_PLACEMENT": '{"gold": "pro"}'})


def test_an_endpoint_per_shard_routes_a_shard_added_later_to_its_own_instance() -> None:
    config = Config.from_env({"CHECKOUT_MERCHANT_ENDPOINTS": "merchant-{shard}.merchant:50051"})
    assert config.endpoint_for("merchant", 0) == "merchant-0.merchant:50051"
    assert config.endpoint_for("merchant", 7) == "merchant-7.merchant:50051"
    listed = Config.from_env({"CHECKOUT_MERCHANT_ENDPOINTS": "0-1=m:1;2=n:2"})
    assert [listed.endpoint_for("merchant", s) for s in (1, 2)] == ["m:1", "n:2"]


def test_a_dsn_that_does_not_parse_is_shown_as_such_never_as_itself() -> None:
    assert redact_dsn("postgresql://u:secret@[bad/x") == "(a DSN that does not parse)"
    assert redact_dsn("postgresql://u:secret@h:99999/x") == "(a DSN that does not parse)"
