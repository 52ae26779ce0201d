"""The operator's view of the shards (the map, each shard's counts, tier and usage, the
balance and the planner's proposal) and the registration of a new shard."""

from __future__ import annotations

from typing import Annotated

from checkout.invoice.v1 import invoice_pb2
from pydantic import Field

from libs.common.balance import TOLERANCE
from libs.common.placement import TIERS
from services.gateway.schemas.base import RequestModel, ResponseModel
from services.gateway.schemas.types import Choice

DSN_MAX_CHARS = 1000
# user@host/database, each named (the host may be libpq's ?host=): nothing left to the gateway
# process's defaults; the rest is for the connection attempt to judge.
DSN_PATTERN = r"^postgres(ql)?://[^@/?#\u0000]+@[^/?#\u0000]*/[^/?#\u0000]+(\?[^\u0000]*)?$"


class Replica(ResponseModel):
    """A read replica of a shard, as the shard's invoice service measures it."""

    name: str = Field(description="host:port/database (no credentials).")
    roles: list[str] = Field(description="The reads it may serve: read, customer, analytics, archive.")
    up: bool
    lag_seconds: float | None = Field(description="How stale a read from it may be; null: unknown.")
    lag_bytes: int | None = Field(description="WAL it has not replayed yet.")
    lagging: bool = Field(description="Down, or more than 1 s behind (the replication-lag alert).")
    error: str = Field(description="Why it is down; empty when up.")

    @classmethod
    def of(cls, r: invoice_pb2.ReplicaStatus) -> Replica:
        return cls(
            name=r.name,
            roles=list(r.roles),
            up=r.up,
            lag_seconds=round(r.lag_seconds, 3) if r.HasField("lag_seconds") else None,
            lag_bytes=r.lag_bytes if r.HasField("lag_bytes") else None,
            lagging=r.lagging,
            error=r.error,
        )


class ShardView(ResponseModel):
    id: int
    tier: str = Field(description="The plan tier it serves (`shared`: every plan).")
    slots: int
    slot_ranges: list[list[int]] = Field(description="Half-open [start, end) slot ranges.")
    merchants: int | None = Field(description="null when the shard did not answer.")
    invoices: int | None
    rows: int | None = Field(description="Events in every service's schema; null when one did not answer.")
    bytes: int | None = Field(description="Their tables and indexes on disk; null as `rows`.")
    healthy: bool
    replicas: list[Replica] | None = Field(
        description="Its read replicas ([]: every read goes to the primary); null when it did not answer."
    )


class ProposedMove(ResponseModel):
    slots: str = Field(description="first-last, inclusive: as `POST /v1/admin/slot-moves` takes it.")
    from_shard: int
    to_shard: int
    rows: int = Field(description="Events the move copies.")


class Balance(ResponseModel):
    tolerance: float = Field(description=f"How far from its tier group's mean a shard may be ({TOLERANCE}).")
    imbalance_ratio: float = Field(
        description="The largest distance of a shard's rows from its tier group's mean, over that mean."
    )
    balanced: bool = Field(description="Every shard within the tolerance.")
    complete: bool = Field(description="Every shard answered; false: the figures leave some out.")
    proposed_moves: list[ProposedMove] = Field(
        description="Slot moves that bring every shard within the tolerance (rows of a slot are not split)."
    )


class Shards(ResponseModel):
    shards: list[ShardView]
    shard_map_version: int
    balance: Balance


class ShardRegistration(RequestModel):
    dsn: str = Field(
        max_length=DSN_MAX_CHARS,
        pattern=DSN_PATTERN,
        description="The new shard's PostgreSQL DSN, `postgresql://user[:password]@host[:port]/database`; "
        "its database is created when missing on a server that holds shards already.",
    )
    tier: Annotated[str, Choice(TIERS)] = Field(
        default="shared", description="The plan tier it serves (CHECKOUT_PLACEMENT)."
    )


class RegisteredShard(ResponseModel):
    id: int
    tier: str
    dsn: str = Field(description="Without its password.")
    slots: int = Field(description="0: it owns slots once a slot move gives it some.")
