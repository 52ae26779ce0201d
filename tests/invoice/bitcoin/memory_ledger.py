"""The watched wallet (three addresses of a test zpub) and an in-memory ledger: our own Ledger
protocol, implemented faithfully, for the Bitcoin watcher's tests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from libs.common.addresses import derive_bitcoin_address
from services.invoice.chains.base import OpenPayment, PaymentKey, Transfer, WatchedAddress

ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1"
    "ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
A, B, C = (derive_bitcoin_address(ZPUB, i) for i in range(3))
UNWATCHED = derive_bitcoin_address(ZPUB, 99)
REQUIRED = 3


# --- an in-memory ledger: our own Ledger protocol, implemented faithfully ------------------------


@dataclass
class Payment:
    transfer: Transfer
    invoice_id: uuid.UUID
    confirmations: int = 0
    state: str = "open"  # open -> confirmed | retracted (retracted -> open when seen again)
    reason: str | None = None


def _unmined(t: Transfer) -> Transfer:
    return replace(t, block_number=None, block_hash=None, block_time=None)


class MemoryLedger:
    """Idempotent by PaymentKey, like the real one: a sighting seen again changes nothing unless
    its block changed; a retracted payment seen again is followed again."""

    def __init__(self, required_confirmations: int = REQUIRED) -> None:
        self.required = required_confirmations
        self.addresses: dict[str, WatchedAddress] = {}
        self.payments: dict[PaymentKey, Payment] = {}
        self.journal: list[tuple[str, PaymentKey]] = []

    def watch(self, address: str) -> None:
        self.addresses[address] = WatchedAddress(address, uuid.uuid4(), "BTC")

    def credited(self, address: str) -> int:
        return sum(
            p.transfer.amount_units
            for p in self.payments.values()
            if p.transfer.to_address == address and p.state != "retracted"
        )

    def events(self, kind: str) -> list[PaymentKey]:
        return [key for k, key in self.journal if k == kind]

    async def watched(self, network: str) -> Mapping[str, WatchedAddress]:
        assert network == "bitcoin"
        return dict(self.addresses)

    async def open_payments(self, network: str) -> Sequence[OpenPayment]:
        return [
            OpenPayment(
                key, p.invoice_id, p.transfer.to_address, p.transfer.block_number, p.transfer.block_hash
            )
            for key, p in self.payments.items()
            if p.state == "open"
        ]

    async def record(self, transfers: Sequence[Transfer], tip: int) -> None:
        for t in transfers:
            assert t.network == "bitcoin" and t.asset == "BTC"
            payment = self.payments.get(t.key)
            if payment is None:
                self.payments[t.key] = payment = Payment(t, self.addresses[t.to_address].invoice_id)
                self.journal.append(("detected", t.key))
            else:
                # The same key is the same output: only where it is mined may change.
                assert _unmined(payment.transfer) == _unmined(t)
                if payment.state == "confirmed":
                    continue  # final
                if payment.state == "retracted":
                    payment.state, payment.reason = "open", None
                    self.journal.append(("revived", t.key))
                if (payment.transfer.block_hash, payment.transfer.block_number) != (
                    t.block_hash,
                    t.block_number,
                ):
                    self.journal.append(("moved", t.key))
                payment.transfer = t
            self._count(t.key, payment, tip)

    async def retract(self, network: str, keys: Sequence[PaymentKey], reason: str) -> None:
        for key in keys:
            payment = self.payments[key]
            if payment.state == "open":
                payment.state, payment.reason, payment.confirmations = "retracted", reason, 0
                self.journal.append(("retracted", key))

    async def update_confirmations(self, network: str, tip: int) -> None:
        for key, payment in self.payments.items():
            if payment.state == "open":
                self._count(key, payment, tip)

    def _count(self, key: PaymentKey, payment: Payment, tip: int) -> None:
        block = payment.transfer.block_number
        payment.confirmations = 0 if block is None else max(tip - block + 1, 0)
        if payment.confirmations >= self.required:
            payment.state = "confirmed"
            self.journal.append(("confirmed", key))
