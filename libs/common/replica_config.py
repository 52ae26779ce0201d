"""Read replicas per shard: the seed's replica roles, and `CHECKOUT_SHARD_REPLICAS`.

The roles, their lag tolerances and the replication-lag alert come from the seed's "Read
Replica Strategy" and "Key Metrics to Monitor"; every read names its role (libs/common/replicas.py
routes it). `CHECKOUT_SHARD_REPLICAS` gives each shard's read DSNs per role, as JSON (or `@path` to
a JSON file):

    {"*": "postgresql://replica-host/postgres"}
        every shard, every role: that server, each shard on its own database (`<prefix>_shard_<n>`,
        as with CHECKOUT_DATABASE_URL)
    {"0": {"read": "postgresql://r0/checkout_shard_0", "analytics": ["dsn", "dsn"]}, "1": "dsn"}
        a shard's DSNs, used as given: one for every role, or per role (one or a list)

A shard's own entry wins over `"*"` role by role; a role with no replica reads the primary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Role:
    name: str
    max_lag_seconds: float  # a replica further behind than this does not serve the role
    purpose: str


READ = Role("read", 0.1, "general queries: a merchant's invoices and customers")
CUSTOMER = Role("customer", 0.5, "payment pages: the payer's checkout view")
ANALYTICS = Role("analytics", 5.0, "reports and dashboards, operator views")
ARCHIVE = Role("archive", 3600.0, "historical data: archived partitions")
ROLES: Mapping[str, Role] = {r.name: r for r in (READ, CUSTOMER, ANALYTICS, ARCHIVE)}

# The seed's alert threshold: a replica this far behind is flagged (`GET /v1/admin/shards`).
REPLICATION_LAG_ALERT_SECONDS = 1.0

ShardReplicas = Mapping[int, Mapping[str, tuple[str, ...]]]


class ReplicaConfigError(ValueError):
    """CHECKOUT_SHARD_REPLICAS is malformed; the message says where."""


def parse_shard_replicas(
    raw: str, shard_count: int, shard_database: Callable[[str, int], str]
) -> dict[int, dict[str, tuple[str, ...]]]:
    """{shard: {role: (dsn, ...)}} for the shards and roles that have replicas.

    `shard_database(server_url, shard)` is the shard's database on a server (for `"*"`)."""
    name = "CHECKOUT_SHARD_REPLICAS"
    if not raw:
        return {}
    if raw.startswith("@"):
        try:
            raw = Path(raw[1:]).read_text()
        except OSError as error:
            raise ReplicaConfigError(f"{name}: cannot read {raw[1:]}: {error}") from None
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise ReplicaConfigError(f"{name} must be a JSON object: {error}") from None
    if not isinstance(document, dict):
        raise ReplicaConfigError(f'{name} must be a JSON object keyed by shard number or "*"')
    everywhere = _roles(document.get("*"), f"{name}[*]") if "*" in document else {}
    result: dict[int, dict[str, tuple[str, ...]]] = {}
    for shard in range(shard_count):
        roles = {role: tuple(shard_database(url, shard) for url in urls) for role, urls in everywhere.items()}
        result[shard] = roles
    for key, value in document.items():
        if key == "*":
            continue
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and int(key) < shard_count):
            raise ReplicaConfigError(f'{name}: {key!r} is not "*" or a shard number below {shard_count}')
        result[int(key)].update(_roles(value, f"{name}[{key}]"))
    return {shard: roles for shard, roles in result.items() if roles}


def parse_max_lag(raw: str) -> dict[str, float]:
    """`CHECKOUT_REPLICA_MAX_LAG`, e.g. `read=0.2,analytics=10`: tolerances overriding the seed's."""
    name = "CHECKOUT_REPLICA_MAX_LAG"
    tolerances = {role.name: role.max_lag_seconds for role in ROLES.values()}
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        role, sep, value = part.partition("=")
        role = role.strip()
        if not sep or role not in ROLES:
            raise ReplicaConfigError(f"{name}: {part!r} is not <role>=<seconds>; roles: {', '.join(ROLES)}")
        try:
            seconds = float(value)
        except ValueError:
            raise ReplicaConfigError(f"{name}: {value.strip()!r} is not a number of seconds") from None
        if not 0 < seconds < float("inf"):
            raise ReplicaConfigError(f"{name}: the tolerance of {role} must be positive")
        tolerances[role] = seconds
    return tolerances


def _roles(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if isinstance(value, str):
        return {role: (_dsn(value, where),) for role in ROLES}
    if not isinstance(value, dict) or not value:
        raise ReplicaConfigError(f"{where} must be a DSN or an object of role -> DSN(s)")
    roles: dict[str, tuple[str, ...]] = {}
    for role, dsns in value.items():
        if role not in ROLES:
            raise ReplicaConfigError(f"{where}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        listed = [dsns] if isinstance(dsns, str) else dsns
        if not isinstance(listed, list) or not listed:
            raise ReplicaConfigError(f"{where}[{role}] must be a DSN or a non-empty list of DSNs")
        roles[role] = tuple(_dsn(d, f"{where}[{role}]") for d in listed)
    return roles


def _dsn(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
        raise ReplicaConfigError(f"{where}: {value!r} is not a postgresql:// DSN")
    return value
