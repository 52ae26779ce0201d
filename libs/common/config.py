"""Configuration: environment variables read once into a frozen dataclass.

Every variable is documented in the README's configuration table; `Config.from_env` is the only
place that reads them, so a typo fails at start-up with the variable's name, not at first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from libs.common.config_values import (
    ConfigError,
    EnvReader,
    parse_addresses,
    parse_rate_providers,
    parse_shard_set,
)
from libs.common.limits import EXPIRY_MIN_SECONDS, PAGE_LIMIT_MAX
from libs.common.networks import NetworkConfig, NetworkConfigError, parse_networks
from libs.common.placement import PlacementError, parse_placement
from libs.common.replica_config import (
    ROLES,
    ReplicaConfigError,
    ShardReplicas,
    parse_max_lag,
    parse_shard_replicas,
)
from libs.common.shardmap import ShardMap

# ConfigError is what every caller of Config.from_env catches: it is the config's error.
__all__ = [
    "DEFAULT_GRPC_PORTS",
    "DEFAULT_METRICS_PORTS",
    "SERVICES",
    "Config",
    "ConfigError",
    "Endpoint",
    "parse_endpoints",
    "with_database",
]

SERVICES = ("merchant", "invoice", "customer", "analytics")
DEFAULT_GRPC_PORTS = {"merchant": 50051, "invoice": 50052, "customer": 50053, "analytics": 50054}
# Where `make up` serves each service's /metrics (CHECKOUT_METRICS_LISTEN).
DEFAULT_METRICS_PORTS = {"merchant": 9101, "invoice": 9102, "customer": 9103, "analytics": 9104}


@dataclass(frozen=True)
class Endpoint:
    """Which shards a service instance at `address` serves; `every`: all of them, also those
    registered after start (a bare `host:port` in CHECKOUT_<SERVICE>_ENDPOINTS). An address
    with `{shard}` in it names one instance per shard (`merchant-{shard}.merchant:50051`: pod n
    of a StatefulSet serving shard n), a shard added later included."""

    shards: frozenset[int]
    address: str
    every: bool = False

    def address_of(self, shard: int) -> str:
        return self.address.replace("{shard}", str(shard))


@dataclass(frozen=True)
class Config:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    shard_dsns: tuple[str, ...] = ()
    # The control database (libs/common/shardstore.py: shard registry, shard map versions);
    # empty: shard 0's database, in its own schema `control`.
    control_dsn: str = ""
    # How often each process reads the shard map even without a notification.
    shard_map_poll_seconds: float = 5.0
    # Whether this process's merchant service runs the slot mover loop (libs/common/slotmover.py;
    # one mover works at a time whatever runs it).
    slot_mover: bool = True
    # Tiered placement (libs/common/placement.py): plan -> shard tier; empty: every plan shared.
    placement: Mapping[str, str] = field(default_factory=dict)
    database_prefix: str = "checkout"
    shard_count: int = 2
    served_shards: frozenset[int] = frozenset()
    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    admin_token: str = ""
    grpc_listen: str = ""
    http_listen: str = "127.0.0.1:8080"
    # Where payers and merchants reach the gateway (links in invoices: `checkout_url`); empty:
    # http:// on the listen address.
    public_base_url: str = ""
    # How long a dashboard sign-in lasts before the merchant gives its API key again.
    dashboard_session_seconds: int = 1800
    # Rows the gateway reads per page while it streams a CSV export (at most the services' page
    # limit): more is fewer round trips, fewer is less held in memory at once.
    export_page_rows: int = PAGE_LIMIT_MAX
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    pool_max_size: int = 25
    pool_min_size: int = 5
    pool_max_lifetime_seconds: float = 300.0
    pool_max_idle_seconds: float = 120.0
    snapshot_every: int = 50
    relay_poll_seconds: float = 1.0
    partitions_ahead_months: int = 3
    cache_hot_ttl_seconds: int = 30
    cache_warm_ttl_seconds: int = 300
    fixed_rates: str = ""
    # Exchange rates (services/invoice/rate_config.py). `fixed` alone never reaches the internet.
    rate_providers: tuple[str, ...] = ("fixed",)
    rate_max_age_seconds: float = 60.0
    rate_cache_seconds: float = 10.0
    rate_timeout_seconds: float = 3.0
    rate_coinbase_url: str = ""  # empty: the exchange's public API
    rate_kraken_url: str = ""
    rate_binance_url: str = ""
    invoice_expiry_seconds: int = 900
    # The shortest expiry a merchant may ask for; tests lower it to watch invoices expire.
    invoice_min_expiry_seconds: int = EXPIRY_MIN_SECONDS
    ethereum_chain_id: int = 1
    stream_name: str = "CHECKOUT_EVENTS"
    subject_prefix: str = "events"
    log_format: str = "text"
    log_level: str = "INFO"
    metrics_listen: str = ""
    # The services' metrics listeners (CHECKOUT_<SERVICE>_METRICS, host:port[,host:port]), for
    # the gateway's operator view GET /v1/admin/metrics.
    metrics_targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    networks: tuple[NetworkConfig, ...] = ()
    # How long an Idempotency-Key is remembered (command_log rows are pruned after it).
    idempotency_key_hours: int = 24
    # How often the invoice service looks for open invoices whose time is up.
    expiry_poll_seconds: float = 5.0
    # Webhook and notification delivery (merchant service).
    webhook_retry_base_seconds: float = 30.0
    webhook_retry_max_seconds: float = 21600.0
    webhook_failing_after: int = 5
    webhook_poll_seconds: float = 1.0
    # The event feed (GET /v1/events): how long its events are kept (merchant service).
    event_feed_retention_days: int = 90
    webhook_allow_loopback: bool = False
    webhook_allow_private: bool = False
    # Fernet keys that encrypt webhook signing secrets at rest, newest first (merchant service).
    webhook_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    smtp_url: str = ""
    smtp_from: str = "notifications@checkout.local"
    # Read replicas (libs/common/replica_config.py): {shard: {role: (dsn, ...)}}; none: the primary.
    shard_replicas: ShardReplicas = field(default_factory=dict)
    # The most a replica may lag and still serve a role, seconds (the seed's tolerances).
    replica_max_lag: Mapping[str, float] = field(
        default_factory=lambda: {name: role.max_lag_seconds for name, role in ROLES.items()}
    )
    # How often each replica's replay position is measured against its primary's.
    replica_probe_seconds: float = 0.05
    # How long a read with a consistency token waits for a replica to replay that far.
    replica_wait_seconds: float = 0.05
    # Partitions (audit entries) older than this move to the archive schema; 0 keeps them hot.
    archive_after_months: int = 12
    # Archived partitions older than this are dropped; 0 (the default) never deletes anything.
    archive_drop_after_months: int = 0
    # The gateway: rate limits as "<count>/<second|minute|hour|day>" (per API key by the
    # merchant's plan; per client IP for failed authentication and for the public checkout), and
    # how long a verified API key is trusted from memory before it is asked about again.
    rate_limit_free: str = "600/minute"
    rate_limit_pro: str = "3000/minute"
    rate_limit_enterprise: str = "12000/minute"
    rate_limit_auth_failures: str = "30/minute"
    rate_limit_checkout: str = "300/minute"
    # How long the limiter waits for Redis before letting the request through uncounted (it
    # fails open, so Redis down costs at most this per request, then a back-off).
    rate_limit_redis_timeout_seconds: float = 0.25
    api_key_cache_seconds: float = 30.0
    api_key_touch_seconds: float = 10.0
    # The gateway's access log: "errors" (4xx, 5xx and slow requests), "all", or "off".
    access_log: str = "errors"

    def plan_rate_limits(self) -> dict[str, str]:
        return {
            "free": self.rate_limit_free,
            "pro": self.rate_limit_pro,
            "enterprise": self.rate_limit_enterprise,
        }

    def public_url(self) -> str:
        """The gateway's public base URL, without a trailing slash."""
        if self.public_base_url:
            return self.public_base_url
        host, _, port = self.http_listen.rpartition(":")
        # A wildcard listen address is not somewhere a browser can go; this machine is.
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # Supervised loops (libs/common/supervise.py): how long one may stay down before the service
    # reports NOT_SERVING, and the longest pause between two restarts.
    loop_grace_seconds: float = 30.0
    loop_backoff_max_seconds: float = 30.0
    health_interval_seconds: float = 2.0
    # Projection consumers: failures of one event before it is parked as a dead letter, and the
    # pause before each retry.
    consumer_max_attempts: int = 5
    consumer_retry_seconds: float = 2.0
    # How long JetStream waits for an ack before redelivering (an ack lost in a NATS restart).
    consumer_ack_wait_seconds: float = 30.0

    def network(self, name: str) -> NetworkConfig | None:
        return next((n for n in self.networks if n.name == name), None)

    def shard_dsn(self, shard: int) -> str:
        if self.shard_dsns:
            return self.shard_dsns[shard]
        return with_database(self.database_url, f"{self.database_prefix}_shard_{shard}")

    def control_database(self) -> str:
        return self.control_dsn or self.shard_dsn(0)

    def replicas_of(self, shard: int) -> Mapping[str, tuple[str, ...]]:
        """The shard's replica DSNs by role (empty: every read goes to the primary)."""
        return self.shard_replicas.get(shard, {})

    def shard_map(self) -> ShardMap:
        return ShardMap.even(self.shard_count)

    @property
    def shards(self) -> range:
        return range(self.shard_count)

    def served(self) -> list[int]:
        return sorted(self.served_shards) if self.served_shards else list(self.shards)

    def grpc_address(self, service: str) -> str:
        return self.grpc_listen or f"127.0.0.1:{DEFAULT_GRPC_PORTS[service]}"

    def endpoint_for(self, service: str, shard: int) -> str:
        for endpoint in self.endpoints.get(service, ()):
            if endpoint.every or shard in endpoint.shards:
                return endpoint.address_of(shard)
        return f"127.0.0.1:{DEFAULT_GRPC_PORTS[service]}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        read, d = EnvReader(env), cls()
        shard_dsns = read.items("CHECKOUT_SHARD_DSNS")
        shard_count = len(shard_dsns) or read.integer("CHECKOUT_SHARD_COUNT", d.shard_count, 1)
        # May name shards beyond the configured ones: those an operator registers (an instance
        # serves each once it is registered, libs/common/service.py).
        served = parse_shard_set(read.text("CHECKOUT_SERVED_SHARDS", ""), "CHECKOUT_SERVED_SHARDS")
        endpoints = {
            svc: parse_endpoints(read.text(f"CHECKOUT_{svc.upper()}_ENDPOINTS", ""), svc, shard_count)
            for svc in SERVICES
        }
        try:
            networks = parse_networks(read.text("CHECKOUT_NETWORKS", ""))
        except NetworkConfigError as error:
            raise ConfigError(str(error)) from None
        export_page_rows = read.integer("CHECKOUT_EXPORT_PAGE_ROWS", d.export_page_rows, 1)
        if export_page_rows > PAGE_LIMIT_MAX:
            raise ConfigError(
                f"CHECKOUT_EXPORT_PAGE_ROWS must be <= {PAGE_LIMIT_MAX}, got {export_page_rows}"
            )
        database_url = read.text("CHECKOUT_DATABASE_URL", d.database_url)
        prefix = read.text("CHECKOUT_DATABASE_PREFIX", d.database_prefix)
        try:
            shard_replicas = parse_shard_replicas(
                read.text("CHECKOUT_SHARD_REPLICAS", ""),
                shard_count,
                # A shard's replica database is named as its primary's.
                lambda server, shard: with_database(
                    server,
                    urlsplit(shard_dsns[shard]).path.lstrip("/") if shard_dsns else f"{prefix}_shard_{shard}",
                ),
            )
            max_lag = parse_max_lag(read.text("CHECKOUT_REPLICA_MAX_LAG", ""))
        except ReplicaConfigError as error:
            raise ConfigError(str(error)) from None
        archive_after = read.integer("CHECKOUT_ARCHIVE_AFTER_MONTHS", d.archive_after_months)
        archive_drop = read.integer("CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS", d.archive_drop_after_months)
        if archive_drop and not archive_after < archive_drop:
            raise ConfigError(
                "CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS must be more than CHECKOUT_ARCHIVE_AFTER_MONTHS "
                "(a partition is archived before it may be dropped)"
            )
        try:
            placement = parse_placement(read.text("CHECKOUT_PLACEMENT", ""))
        except PlacementError as error:
            raise ConfigError(str(error)) from None
        log_format = read.text("CHECKOUT_LOG_FORMAT", d.log_format)
        if log_format not in ("text", "json"):
            raise ConfigError(f"CHECKOUT_LOG_FORMAT must be text or json, got {log_format!r}")
        return cls(
            database_url=database_url,
            shard_dsns=shard_dsns,
            control_dsn=read.text("CHECKOUT_CONTROL_DSN", ""),
            shard_map_poll_seconds=read.seconds("CHECKOUT_SHARD_MAP_POLL_SECONDS", d.shard_map_poll_seconds),
            slot_mover=read.flag("CHECKOUT_SLOT_MOVER", d.slot_mover),
            placement=placement,
            database_prefix=prefix,
            shard_count=shard_count,
            served_shards=served,
            nats_url=read.text("CHECKOUT_NATS_URL", d.nats_url),
            redis_url=read.text("CHECKOUT_REDIS_URL", d.redis_url),
            admin_token=read.text("CHECKOUT_ADMIN_TOKEN", ""),
            grpc_listen=read.text("CHECKOUT_GRPC_LISTEN", ""),
            http_listen=read.text("CHECKOUT_HTTP_LISTEN", d.http_listen),
            public_base_url=read.url("CHECKOUT_PUBLIC_BASE_URL"),
            dashboard_session_seconds=read.integer(
                "CHECKOUT_DASHBOARD_SESSION_SECONDS", d.dashboard_session_seconds, 60
            ),
            export_page_rows=export_page_rows,
            endpoints=endpoints,
            pool_max_size=read.integer("CHECKOUT_DB_POOL_MAX", d.pool_max_size, 1),
            pool_min_size=read.integer("CHECKOUT_DB_POOL_MIN", d.pool_min_size),
            pool_max_lifetime_seconds=read.seconds(
                "CHECKOUT_DB_POOL_MAX_LIFETIME", d.pool_max_lifetime_seconds
            ),
            pool_max_idle_seconds=read.seconds("CHECKOUT_DB_POOL_MAX_IDLE", d.pool_max_idle_seconds),
            snapshot_every=read.integer("CHECKOUT_SNAPSHOT_EVERY", d.snapshot_every, 1),
            relay_poll_seconds=read.seconds("CHECKOUT_RELAY_POLL_SECONDS", d.relay_poll_seconds),
            partitions_ahead_months=read.integer(
                "CHECKOUT_PARTITIONS_AHEAD_MONTHS", d.partitions_ahead_months, 1
            ),
            cache_hot_ttl_seconds=read.integer("CHECKOUT_CACHE_HOT_TTL", d.cache_hot_ttl_seconds, 1),
            cache_warm_ttl_seconds=read.integer("CHECKOUT_CACHE_WARM_TTL", d.cache_warm_ttl_seconds, 1),
            fixed_rates=read.text("CHECKOUT_FIXED_RATES", ""),
            rate_providers=parse_rate_providers(read.text("CHECKOUT_RATE_PROVIDERS", "fixed")),
            rate_max_age_seconds=read.seconds("CHECKOUT_RATE_MAX_AGE_SECONDS", d.rate_max_age_seconds),
            rate_cache_seconds=read.seconds("CHECKOUT_RATE_CACHE_SECONDS", d.rate_cache_seconds),
            rate_timeout_seconds=read.seconds("CHECKOUT_RATE_TIMEOUT_SECONDS", d.rate_timeout_seconds),
            rate_coinbase_url=read.url("CHECKOUT_RATE_COINBASE_URL"),
            rate_kraken_url=read.url("CHECKOUT_RATE_KRAKEN_URL"),
            rate_binance_url=read.url("CHECKOUT_RATE_BINANCE_URL"),
            invoice_expiry_seconds=read.integer(
                "CHECKOUT_INVOICE_EXPIRY_SECONDS", d.invoice_expiry_seconds, 60
            ),
            invoice_min_expiry_seconds=read.integer(
                "CHECKOUT_INVOICE_MIN_EXPIRY_SECONDS", d.invoice_min_expiry_seconds, 1
            ),
            ethereum_chain_id=read.integer("CHECKOUT_ETHEREUM_CHAIN_ID", d.ethereum_chain_id, 1),
            stream_name=read.text("CHECKOUT_STREAM_NAME", d.stream_name),
            subject_prefix=read.text("CHECKOUT_SUBJECT_PREFIX", d.subject_prefix),
            log_format=log_format,
            log_level=read.text("CHECKOUT_LOG_LEVEL", d.log_level).upper(),
            metrics_listen=read.text("CHECKOUT_METRICS_LISTEN", ""),
            metrics_targets={
                svc: parse_addresses(
                    read.text(f"CHECKOUT_{svc.upper()}_METRICS", ""), f"CHECKOUT_{svc.upper()}_METRICS"
                )
                for svc in SERVICES
            },
            networks=networks,
            expiry_poll_seconds=read.seconds("CHECKOUT_EXPIRY_POLL_SECONDS", d.expiry_poll_seconds),
            idempotency_key_hours=read.integer("CHECKOUT_IDEMPOTENCY_KEY_HOURS", d.idempotency_key_hours, 1),
            webhook_retry_base_seconds=read.seconds(
                "CHECKOUT_WEBHOOK_RETRY_BASE_SECONDS", d.webhook_retry_base_seconds
            ),
            webhook_retry_max_seconds=read.seconds(
                "CHECKOUT_WEBHOOK_RETRY_MAX_SECONDS", d.webhook_retry_max_seconds
            ),
            webhook_failing_after=read.integer("CHECKOUT_WEBHOOK_FAILING_AFTER", d.webhook_failing_after, 1),
            webhook_poll_seconds=read.seconds("CHECKOUT_WEBHOOK_POLL_SECONDS", d.webhook_poll_seconds),
            event_feed_retention_days=read.integer(
                "CHECKOUT_EVENT_FEED_RETENTION_DAYS", d.event_feed_retention_days, 1
            ),
            webhook_allow_loopback=read.flag("CHECKOUT_WEBHOOK_ALLOW_LOOPBACK", d.webhook_allow_loopback),
            webhook_allow_private=read.flag("CHECKOUT_WEBHOOK_ALLOW_PRIVATE", d.webhook_allow_private),
            webhook_secret_keys=read.items("CHECKOUT_WEBHOOK_SECRET_KEYS"),
            smtp_url=read.text("CHECKOUT_SMTP_URL", ""),
            smtp_from=read.text("CHECKOUT_SMTP_FROM", d.smtp_from),
            shard_replicas=shard_replicas,
            replica_max_lag=max_lag,
            replica_probe_seconds=read.seconds("CHECKOUT_REPLICA_PROBE_SECONDS", d.replica_probe_seconds),
            replica_wait_seconds=read.seconds("CHECKOUT_REPLICA_WAIT_SECONDS", d.replica_wait_seconds),
            archive_after_months=archive_after,
            archive_drop_after_months=archive_drop,
            rate_limit_free=read.rate("CHECKOUT_RATE_LIMIT_FREE", d.rate_limit_free),
            rate_limit_pro=read.rate("CHECKOUT_RATE_LIMIT_PRO", d.rate_limit_pro),
            rate_limit_enterprise=read.rate("CHECKOUT_RATE_LIMIT_ENTERPRISE", d.rate_limit_enterprise),
            rate_limit_auth_failures=read.rate(
                "CHECKOUT_RATE_LIMIT_AUTH_FAILURES", d.rate_limit_auth_failures
            ),
            rate_limit_checkout=read.rate("CHECKOUT_RATE_LIMIT_CHECKOUT", d.rate_limit_checkout),
            rate_limit_redis_timeout_seconds=read.seconds(
                "CHECKOUT_RATE_LIMIT_REDIS_TIMEOUT_SECONDS", d.rate_limit_redis_timeout_seconds
            ),
            api_key_cache_seconds=read.seconds("CHECKOUT_API_KEY_CACHE_SECONDS", d.api_key_cache_seconds),
            api_key_touch_seconds=read.seconds("CHECKOUT_API_KEY_TOUCH_SECONDS", d.api_key_touch_seconds),
            access_log=read.choice("CHECKOUT_ACCESS_LOG", d.access_log, ("errors", "all", "off")),
            loop_grace_seconds=read.seconds("CHECKOUT_LOOP_GRACE_SECONDS", d.loop_grace_seconds),
            loop_backoff_max_seconds=read.seconds(
                "CHECKOUT_LOOP_BACKOFF_MAX_SECONDS", d.loop_backoff_max_seconds
            ),
            health_interval_seconds=read.seconds(
                "CHECKOUT_HEALTH_INTERVAL_SECONDS", d.health_interval_seconds
            ),
            consumer_max_attempts=read.integer("CHECKOUT_CONSUMER_MAX_ATTEMPTS", d.consumer_max_attempts, 1),
            consumer_retry_seconds=read.seconds("CHECKOUT_CONSUMER_RETRY_SECONDS", d.consumer_retry_seconds),
            consumer_ack_wait_seconds=read.seconds(
                "CHECKOUT_CONSUMER_ACK_WAIT_SECONDS", d.consumer_ack_wait_seconds
            ),
        )


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database (keeps host, socket dir, user)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def parse_endpoints(raw: str, service: str, shard_count: int) -> tuple[Endpoint, ...]:
    """`"0-1=host:port;2-3=other:port"`, or a bare `host:port` serving every shard (with
    `{shard}` in it: an instance per shard, `name-{shard}.name:port`)."""
    name = f"CHECKOUT_{service.upper()}_ENDPOINTS"
    endpoints = []
    for part in (p.strip() for p in raw.split(";") if p.strip()):
        shards_raw, sep, address = part.rpartition("=")
        shards = parse_shard_set(shards_raw, name) if sep else frozenset(range(shard_count))
        if not address or ":" not in address:
            raise ConfigError(f"{name}: {part!r} needs host:port")
        endpoints.append(Endpoint(shards, address, every=not sep))
    return tuple(endpoints)
