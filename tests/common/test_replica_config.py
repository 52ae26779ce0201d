"""CHECKOUT_SHARD_REPLICAS and the other replica settings, as Config.from_env reads them; the
consistency token's format; the staleness bound's history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.common.config import Config, ConfigError
from libs.common.consistency import Token, TokenError
from libs.common.replica_config import ROLES
from libs.common.replicas import PrimaryHistory, replica_name

SERVER = "postgresql://reader:secret@replica.internal:5433/postgres?sslmode=require"


def test_no_replicas_configured_means_every_role_reads_the_primary() -> None:
    config = Config.from_env({})
    assert config.shard_replicas == {}
    assert config.replicas_of(0) == {}
    assert config.replica_max_lag == {"read": 0.1, "customer": 0.5, "analytics": 5.0, "archive": 3600.0}


def test_a_star_server_gives_every_shard_its_own_database_for_every_role() -> None:
    config = Config.from_env(
        {
            "CHECKOUT_SHARD_COUNT": "2",
            "CHECKOUT_DATABASE_PREFIX": "shop",
            "CHECKOUT_SHARD_REPLICAS": json.dumps({"*": SERVER}),
        }
    )
    for shard in (0, 1):
        assert set(config.replicas_of(shard)) == set(ROLES)
        [dsn] = config.replicas_of(shard)["read"]
        assert dsn == f"postgresql://reader:secret@replica.internal:5433/shop_shard_{shard}?sslmode=require"


def test_a_shards_own_entry_wins_role_by_role_and_takes_dsns_as_given() -> None:
    raw = {
        "*": {"analytics": SERVER},
        "1": {"read": ["postgresql://r1/a", "postgresql://r2/a"], "analytics": "postgresql://r3/x"},
    }
    config = Config.from_env({"CHECKOUT_SHARD_COUNT": "2", "CHECKOUT_SHARD_REPLICAS": json.dumps(raw)})
    assert set(config.replicas_of(0)) == {"analytics"}
    assert config.replicas_of(1) == {
        "read": ("postgresql://r1/a", "postgresql://r2/a"),
        "analytics": ("postgresql://r3/x",),
    }


def test_replicas_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "replicas.json"
    path.write_text(json.dumps({"0": "postgresql://r0/db"}))
    config = Config.from_env({"CHECKOUT_SHARD_COUNT": "1", "CHECKOUT_SHARD_REPLICAS": f"@{path}"})
    assert config.replicas_of(0)["customer"] == ("postgresql://r0/db",)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("not json", "JSON"),
        ('["postgresql://x/y"]', "JSON object"),
        ('{"2": "postgresql://x/y"}', "'2'"),
        ('{"0": {"reporting": "postgresql://x/y"}}', "unknown role 'reporting'"),
        ('{"0": {"read": []}}', "non-empty list"),
        ('{"0": "mysql://x/y"}', "postgresql://"),
    ],
)
def test_a_malformed_replica_map_fails_start_up_saying_where(raw: str, names: str) -> None:
    with pytest.raises(ConfigError, match="CHECKOUT_SHARD_REPLICAS") as error:
        Config.from_env({"CHECKOUT_SHARD_COUNT": "2", "CHECKOUT_SHARD_REPLICAS": raw})
    assert names in str(error.value)


def test_tolerances_may_be_tuned_per_role_and_must_be_positive() -> None:
    config = Config.from_env({"CHECKOUT_REPLICA_MAX_LAG": "read=0.25, analytics=30"})
    assert config.replica_max_lag["read"] == 0.25 and config.replica_max_lag["analytics"] == 30.0
    assert config.replica_max_lag["customer"] == 0.5
    for bad in ("read", "read=-1", "read=soon", "reporting=1"):
        with pytest.raises(ConfigError, match="CHECKOUT_REPLICA_MAX_LAG"):
            Config.from_env({"CHECKOUT_REPLICA_MAX_LAG": bad})


def test_archiving_is_on_after_a_year_and_dropping_needs_an_explicit_later_setting() -> None:
    config = Config.from_env({})
    assert config.archive_after_months == 12 and config.archive_drop_after_months == 0
    assert Config.from_env({"CHECKOUT_ARCHIVE_AFTER_MONTHS": "0"}).archive_after_months == 0
    later = Config.from_env(
        {"CHECKOUT_ARCHIVE_AFTER_MONTHS": "6", "CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS": "36"}
    )
    assert later.archive_drop_after_months == 36
    with pytest.raises(ConfigError, match="CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS"):
        Config.from_env({"CHECKOUT_ARCHIVE_AFTER_MONTHS": "12", "CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS": "12"})


def test_a_token_round_trips_and_merging_keeps_each_shards_later_position() -> None:
    token = Token({0: 0x16B3748, 3: 5})
    assert Token.parse(token.encode()) == token
    assert token.merge(Token({0: 1, 1: 7})).positions == {0: 0x16B3748, 1: 7, 3: 5}
    assert not Token() and Token.from_metadata([("x-request-id", "r")]) == Token()
    with pytest.raises(TokenError):
        Token.parse("v2:0=1")


def test_a_replica_holds_what_the_primary_held_at_the_last_sample_it_has_replayed() -> None:
    history = PrimaryHistory(horizon_seconds=60)
    assert history.caught_up_at(10) is None
    history.add(100, at=1.0)
    history.add(100, at=2.0)  # nothing written in between: the replica at 100 is current as of 2.0
    history.add(150, at=3.0)
    assert history.caught_up_at(99) is None  # behind every sample: staleness unknown, never routed
    assert history.caught_up_at(120) == 2.0
    assert history.caught_up_at(150) == 3.0
    history.add(200, at=100.0)  # samples older than the horizon go
    assert history.caught_up_at(150) is None


def test_a_replica_is_named_without_its_credentials() -> None:
    assert replica_name(SERVER) == "replica.internal:5433/postgres"
    assert (
        replica_name("postgresql://postgres@/shop_shard_0?host=/tmp/sock&port=5499")
        == "/tmp/sock:5499/shop_shard_0"
    )
