"""What an Invoice remembers of its events, how each event changes it, and its snapshot.

The fields of `InvoiceState` are the one declaration of that memory: a new aggregate starts from
their defaults, the snapshot writes each of them and `restore` reads each back, so a field added
here is snapshotted with no second list to keep in step (a value that is not plain JSON names its
codec). `_apply` dispatches on the event's message class; an event it has no method for changes
nothing. The commands that emit the events are in domain.py.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Hashable
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from decimal import Decimal
from functools import singledispatchmethod
from typing import Any, Protocol, Self

from checkout.invoice.v1 import events_pb2 as ev

from libs.common import events
from libs.common.aggregate import Aggregate
from libs.common.protoconv import datetime_of
from services.invoice import pricing
from services.invoice.refunds import RefundState

# Every status an invoice can be in: `pending`, where it starts, then each status a status event
# moves it to (events.proto, StatusChange), in the order they are declared there.
STATUSES: tuple[str, ...] = tuple(dict.fromkeys(("pending", *events.STATUS_EVENTS.values())))
# Statuses in which payments count towards the invoice; after these it is closed and a payment
# is recorded as late (never lost, never counted).
OPEN_STATUSES = frozenset({"pending", "partial"})
CLOSED_STATUSES = frozenset({"expired", "cancelled"})
PAYMENT_STATUSES = ("detected", "confirming", "confirmed", "failed", "reorged")
# What a payment's confirmations make of it, before it is confirmed.
LIVE_PAYMENT_STATUSES = frozenset({"detected", "confirming", "confirmed"})


@dataclass(frozen=True)
class PaymentState:
    payment_id: str
    network: str
    tx_hash: str
    output_index: int
    amount: Decimal
    status: str
    block_number: int | None
    block_hash: str
    confirmations: int
    required: int
    late: bool

    @property
    def counted(self) -> bool:
        return self.status in LIVE_PAYMENT_STATUSES and not self.late

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "amount": str(self.amount)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaymentState:
        return cls(**{**data, "amount": Decimal(data["amount"])})


def payment_status(confirmations: int, required: int) -> str:
    if confirmations >= required:
        return "confirmed"
    return "confirming" if confirmations > 0 else "detected"


# -- how a field is written to a snapshot and read back ------------------------------------------
@dataclass(frozen=True)
class _Codec:
    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]


class _Entry(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self: ...


# A field's metadata names its codec; a field without one is plain JSON, written as it is.
_PLAIN = _Codec(lambda value: value, lambda value: value)
_DECIMAL = {"codec": _Codec(str, Decimal)}
_MOMENT = {
    "codec": _Codec(
        lambda value: value.isoformat() if value else None,
        lambda raw: dt.datetime.fromisoformat(raw) if raw else None,
    )
}


def _collection(entry: type[_Entry], key: Callable[[Any], Hashable]) -> dict[str, _Codec]:
    """A dict of entries, kept in a snapshot as the list of their JSON in insertion order."""
    return {
        "codec": _Codec(
            lambda held: [value.to_json() for value in held.values()],
            lambda rows: {key(value): value for value in map(entry.from_json, rows)},
        )
    }


def _codec(declared: Field[Any]) -> _Codec:
    codec: _Codec = declared.metadata.get("codec", _PLAIN)
    return codec


@dataclass(init=False, eq=False, repr=False)
class InvoiceState(Aggregate):
    """The Invoice's fields, in the order its snapshots have always listed them."""

    merchant_id: str = ""
    status: str = "pending"
    crypto_currency: str = ""
    crypto_amount: Decimal = field(default=Decimal(0), metadata=_DECIMAL)
    amount_paid: Decimal = field(default=Decimal(0), metadata=_DECIMAL)
    payment_address: str = ""
    expires_at: dt.datetime | None = field(default=None, metadata=_MOMENT)
    customer_id: str = ""
    total: str = ""
    currency: str = ""
    decimals: int = 0
    underpaid_percent: Decimal = field(default=Decimal(0), metadata=_DECIMAL)
    overpaid: bool = False
    paid_late: bool = False
    payments: dict[tuple[str, int], PaymentState] = field(
        default_factory=dict, metadata=_collection(PaymentState, lambda p: (p.tx_hash, p.output_index))
    )
    network: str = ""
    rate: Decimal = field(default=Decimal(0), metadata=_DECIMAL)  # the locked exchange rate, fiat per coin
    refunds: dict[str, RefundState] = field(
        default_factory=dict, metadata=_collection(RefundState, lambda r: r.refund_id)
    )  # in the order they were made

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        for declared in fields(self):
            factory = declared.default_factory
            setattr(self, declared.name, declared.default if factory is MISSING else factory())

    def snapshot(self) -> dict[str, Any]:
        return {f.name: _codec(f).dump(getattr(self, f.name)) for f in fields(self)}

    def restore(self, data: dict[str, Any]) -> None:
        for declared in fields(self):
            if declared.name in data:
                setattr(self, declared.name, _codec(declared).load(data[declared.name]))
        # Snapshots from before these fields lack them; the coin says what they were.
        asset = pricing.CRYPTO[self.crypto_currency]
        if "decimals" not in data:
            self.decimals = asset.decimals
        if "network" not in data:
            self.network = asset.network

    # -- how each event changes the state -----------------------------------------------------
    @singledispatchmethod
    def _apply(self, event: Any) -> None:
        """An event with no method below changes nothing the aggregate decides with."""

    @_apply.register
    def _created(self, event: ev.InvoiceCreated) -> None:
        self.merchant_id = event.merchant_id
        self.status = "pending"
        self.crypto_currency = event.crypto_currency
        self.crypto_amount = Decimal(event.crypto_amount)
        self.payment_address = event.payment_address
        self.expires_at = datetime_of(event.expires_at)
        self.customer_id = event.customer_id
        self.total = event.total
        self.currency = event.currency
        self.decimals = pricing.CRYPTO[event.crypto_currency].decimals
        self.underpaid_percent = Decimal(event.payment_tolerance.underpaid_percent or "0")
        self.network = event.network
        self.rate = Decimal(event.exchange_rate.rate or "0")

    @_apply.register
    def _status_changed(self, event: ev.StatusChange) -> None:
        self.status = event.status
        self.overpaid = event.overpaid

    @_apply.register
    def _payment_detected(self, event: ev.PaymentDetected) -> None:
        self.payments[(event.tx_hash, event.output_index)] = PaymentState(
            payment_id=event.payment_id,
            network=event.network,
            tx_hash=event.tx_hash,
            output_index=event.output_index,
            amount=Decimal(event.amount),
            status=event.status if event.status != "confirmed" else "confirming",
            block_number=event.block_number if event.HasField("block_number") else None,
            block_hash=event.block_hash,
            confirmations=event.confirmations,
            required=event.required_confirmations,
            late=event.late,
        )
        self._totals(event.amount_paid, event.overpaid)
        self.paid_late = self.paid_late or event.late

    @_apply.register
    def _payment_updated(self, event: ev.PaymentUpdated) -> None:
        key = (event.tx_hash, event.output_index)
        self.payments[key] = replace(
            self.payments[key],
            block_number=event.block_number if event.HasField("block_number") else None,
            block_hash=event.block_hash,
            confirmations=event.confirmations,
            status=event.status,
        )

    @_apply.register
    def _payment_confirmed(self, event: ev.PaymentConfirmed) -> None:
        key = (event.tx_hash, event.output_index)
        self.payments[key] = replace(self.payments[key], status="confirmed")

    @_apply.register
    def _payment_reorged(self, event: ev.PaymentReorged) -> None:
        key = (event.tx_hash, event.output_index)
        self.payments[key] = replace(self.payments[key], status="reorged")
        self._totals(event.amount_paid, event.overpaid)

    def _totals(self, amount_paid: str, overpaid: bool) -> None:
        self.amount_paid = Decimal(amount_paid)
        self.overpaid = overpaid

    @_apply.register
    def _refund_created(self, event: ev.RefundCreated) -> None:
        self.refunds[event.refund_id] = RefundState(
            event.refund_id, Decimal(event.crypto_amount), "awaiting_claim", event.claim_token_sha256
        )

    @_apply.register
    def _refund_claimed(self, event: ev.RefundClaimed) -> None:
        self.refunds[event.refund_id] = self.refunds[event.refund_id].with_status(
            "claimed", address=event.address
        )

    @_apply.register
    def _refund_completed(self, event: ev.RefundCompleted) -> None:
        self.refunds[event.refund_id] = self.refunds[event.refund_id].with_status(
            "completed", tx_hash=event.tx_hash, output_index=event.output_index
        )

    @_apply.register
    def _refund_cancelled(self, event: ev.RefundCancelled) -> None:
        self.refunds[event.refund_id] = self.refunds[event.refund_id].with_status("cancelled")
