"""The resources as the API sends them (TypedDicts: plain dicts at run time, checked by a type
checker). Money is a decimal string, as on the wire: `decimal.Decimal(invoice["total"])` is
exact, never a float. The fields named here are the contract's; answers may carry more."""

from __future__ import annotations

from typing import Any, Generic, TypedDict, TypeVar

T = TypeVar("T")


class Page(TypedDict, Generic[T]):
    data: list[T]
    next_cursor: str | None


class LineItem(TypedDict):
    name: str
    quantity: str
    unit_price: str


class ExchangeRate(TypedDict):
    rate: str
    source: str
    fetched_at: str


class Invoice(TypedDict):
    id: str
    merchant_id: str
    customer_id: str | None
    title: str
    description: str
    items: list[LineItem]
    subtotal: str
    tax: str
    total: str
    currency: str
    crypto_currency: str
    crypto_amount: str
    amount_paid: str
    payment_address: str
    payment_uri: str
    status: str
    exchange_rate: ExchangeRate | None
    metadata: dict[str, Any]
    expires_at: str | None
    created_at: str | None
    updated_at: str | None
    paid_at: str | None
    overpaid: bool
    paid_late: bool
    checkout_url: str


class Checkout(TypedDict):
    id: str
    title: str
    status: str
    total: str
    currency: str
    crypto_currency: str
    crypto_amount: str
    amount_paid: str
    payment_address: str
    payment_uri: str
    expires_at: str | None


class Merchant(TypedDict):
    id: str
    business_name: str
    contact_email: str
    status: str
    plan_type: str
    settings: dict[str, Any]
    wallets: dict[str, str]
    shard: int
    created_at: str
    updated_at: str


class ApiKey(TypedDict):
    id: str
    key: str | None  # the secret: only in the answer that created it
    name: str
    key_type: str
    permissions: list[str]
    status: str
    expires_at: str | None
    created_at: str


class Customer(TypedDict):
    id: str
    email: str


class WebhookEndpoint(TypedDict):
    id: str
    url: str
    events: list[str]
    secret: str | None  # only in the answer that created (or rotated) it


class Shard(TypedDict):
    id: int
    tier: str
    slots: int
    slot_ranges: list[list[int]]
    merchants: int | None  # None when the shard did not answer
    invoices: int | None
    rows: int | None
    bytes: int | None
    healthy: bool


class ProposedMove(TypedDict):
    slots: str  # "first-last", inclusive
    from_shard: int
    to_shard: int
    rows: int


class Balance(TypedDict):
    tolerance: float
    imbalance_ratio: float
    balanced: bool
    complete: bool
    proposed_moves: list[ProposedMove]


class Shards(TypedDict):
    shards: list[Shard]
    shard_map_version: int
    balance: Balance


class SlotMove(TypedDict):
    id: str
    slots: str  # "first-last", inclusive
    from_shard: int
    to_shard: int
    phase: str  # copying, catching_up, fencing, cleaning, done; aborting, aborted
    paused: bool
    abort_requested: bool
    progress: float  # 0..1
    rows_total: int
    rows_copied: int
    rows_copied_by_table: dict[str, int]
    copy_seconds: float | None
    rows_per_second: float | None
    fence_ms: float | None
    map_version: int | None
    error: str | None
    created_at: str
    updated_at: str
    finished_at: str | None


class RegisteredShard(TypedDict):
    id: int
    tier: str
    dsn: str  # without its password
    slots: int


class DeadLetter(TypedDict):
    id: str
    service: str
    shard: int
    projection: str
    event_id: str
    event_type: str
    error: str
    attempts: int
    first_seen_at: str | None
    last_seen_at: str | None


class RetriedDeadLetter(TypedDict):
    applied: bool
    dead_letter: DeadLetter


JSON = dict[str, Any]
