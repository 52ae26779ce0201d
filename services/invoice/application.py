"""Invoice use cases: load, decide, append (with inline read models), answer with plain values.

The application speaks plain values: its requests are strings, numbers, datetimes and the
frozen dataclasses of requests.py, its answers are the views of views.py; grpc_api.py is the
one place that maps them to and from protobuf. (An idempotent command's answer is kept as its
message's bytes, `messages.Reply`, so a retry is answered as it was the first time.) The queries
are in reads.py.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal

import asyncpg
from opentelemetry import trace

from libs.common import addresses, cache, context, ids, telemetry
from libs.common.commandlog import Commands
from libs.common.db import Connection
from libs.common.errors import FailedPrecondition, NotFound
from libs.common.eventstore import ConcurrencyError, Repository, utcnow
from libs.common.service import Runtime
from services.invoice import payment_uris, projections, refunds, repository, views
from services.invoice.domain import Invoice
from services.invoice.inputs import LockedRate, PaymentTarget
from services.invoice.merchants import MerchantDirectory, MerchantProfile
from services.invoice.messages import INVOICE_REPLY, REFUND_REPLY
from services.invoice.pricing import CRYPTO, CryptoAsset, to_base_units
from services.invoice.rate_config import SpreadRateProvider, rate_provider_from_config
from services.invoice.rates import RateUnavailable
from services.invoice.reads import InvoiceReads, invoice_with_refunds, merchant_of, owned, owned_row
from services.invoice.requests import Draft, NewInvoice, NewRefund, check_supported, validate
from services.invoice.settings import merchant_default_underpaid, merchant_spread

log = logging.getLogger("checkout.invoice")
tracer = trace.get_tracer("checkout.invoice")

# A watcher, the expiry job and a merchant's cancel can race on one invoice: reload and retry.
CHANGE_ATTEMPTS = 8
# What a merchant must add for each network, for the FailedPrecondition that says so.
WALLET_HINTS = {
    "ethereum": "an Ethereum account xpub (m/44'/60'/0') under wallets.ethereum",
    "bitcoin": "a BIP84 account zpub (m/84'/0'/0') under wallets.bitcoin",
}


def payment_target(draft: Draft, xpub: str, index: int, rate: LockedRate, chain_id: int) -> PaymentTarget:
    """The address at `index` of the merchant's account key, and the URI a wallet pays it with."""
    amount = draft.crypto_amount(rate.rate)
    units = to_base_units(amount, draft.asset)
    if draft.network == "bitcoin":
        address = addresses.derive_bitcoin_address(xpub, index)
        uri = payment_uris.bip21_uri(address, amount)
    else:
        address = addresses.derive_ethereum_address(xpub, index)
        contract = draft.asset.contract
        uri = (
            payment_uris.eip681_erc20_uri(contract, address, units, chain_id=chain_id)
            if contract
            else payment_uris.eip681_uri(address, units, chain_id=chain_id)
        )
    return PaymentTarget(draft.network, index, address, uri)


class InvoiceApp:
    def __init__(self, runtime: Runtime, rates: SpreadRateProvider | None = None) -> None:
        self.rt = runtime
        self.invoices = Repository(runtime.store, Invoice, runtime.config.snapshot_every)
        # The configured providers (CHECKOUT_RATE_PROVIDERS): median of fresh quotes, less spread.
        self.rates: SpreadRateProvider = rates or rate_provider_from_config(runtime.config)
        self.merchants = MerchantDirectory(runtime.config)
        self.reads = InvoiceReads(runtime)

    async def close(self) -> None:
        await self.merchants.close()
        close = getattr(self.rates, "aclose", None)
        if close is not None:
            await close()

    async def _save(self, conn: Connection, invoice: Invoice) -> None:
        """Appends the invoice's new events and applies them to the inline read models (a create
        writes its rows in the append's own statement instead: `Repository.save_inline`)."""
        for event in await self.invoices.save(conn, invoice):
            await projections.apply(conn, event)

    def _scope(self, command: str, merchant_id: uuid.UUID) -> str:
        # The merchant is part of the scope so one key can never return another merchant's result.
        return f"{context.current().actor}:{merchant_id}:{command}"

    def _configured(self, asset: CryptoAsset) -> CryptoAsset:
        """A token takes its contract (and decimals) from the deployment's network config."""
        network = self.rt.config.network(asset.network)
        token = network.token(asset.symbol) if network else None
        if token is None:
            return asset
        return replace(asset, contract=token.contract, decimals=token.decimals)

    def _chain_id(self, network_name: str) -> int:
        network = self.rt.config.network(network_name)
        if network is not None and network.chain_id is not None:
            return network.chain_id
        return self.rt.config.ethereum_chain_id

    async def _invoice_command(
        self,
        pool: asyncpg.Pool,
        scope: str,
        handle: Callable[[Connection], Awaitable[views.Invoice]],
        fingerprint: str,
    ) -> views.Invoice:
        """An idempotent command returning the invoice (a retry gets the first answer), then the
        invoice's cached copy is dropped."""
        result = await Commands.run(
            pool, scope, handle, INVOICE_REPLY.encode, INVOICE_REPLY.decode, request_hash=fingerprint
        )
        await self.rt.invalidate(uuid.UUID(result.id), cache.invoice_key(result.id))
        return result

    async def _lock_rate(self, symbol: str, currency: str, spread: Decimal) -> LockedRate:
        try:
            quote = await self.rates.get_quote(symbol, currency, spread_percent=spread)
        except RateUnavailable as error:
            raise FailedPrecondition(str(error)) from None
        return LockedRate(quote.rate, quote.source, quote.fetched_at, quote.pair)

    async def _allocate(
        self, conn: Connection, draft: Draft, profile: MerchantProfile
    ) -> tuple[LockedRate, str, int, MerchantProfile | None]:
        """The rate locked with the merchant's spread, the wallet's key and the next unused index
        of it, and the merchant's profile as the index's statement read it."""
        rate = await self._lock_rate(draft.asset.symbol, draft.currency, merchant_spread(profile.settings))
        xpub = profile.wallets.get(draft.network)
        if not xpub:
            raise FailedPrecondition(
                f"the merchant has no {draft.network} wallet: add {WALLET_HINTS[draft.network]} "
                f"to the merchant to accept {draft.asset.symbol}"
            )
        xpub_hash = hashlib.sha256(xpub.encode()).hexdigest()
        index, wallets, settings = await repository.allocate_address_index(
            conn, profile.merchant_id, draft.network, xpub_hash
        )
        current = None
        if wallets is not None and settings is not None:
            current = self.merchants.remember(profile.merchant_id, wallets, settings)
        return rate, xpub, index, current

    async def create_invoice(self, merchant: str, ask: NewInvoice, fingerprint: str) -> views.Invoice:
        """`fingerprint`: the request's hash, so a retry with the same key and another body is refused."""
        merchant_id = merchant_of(merchant)
        pool = self.rt.pool_for(merchant_id)
        shard = self.rt.shard_of(merchant_id)
        draft = validate(
            merchant_id,
            ask,
            default_expiry_seconds=self.rt.config.invoice_expiry_seconds,
            min_expiry_seconds=self.rt.config.invoice_min_expiry_seconds,
        )
        draft = replace(draft, asset=self._configured(draft.asset))
        check_supported(draft.asset)
        # The invoice carries the merchant's slot, so it routes to this shard with no lookup.
        invoice_id = ids.new_id(ids.slot_of(merchant_id))
        scope = self._scope("CreateInvoice", merchant_id)

        # Everything but the write happens before it, on the same connection: the rate (maybe a
        # provider call) holds nothing open, and the address index is taken in a statement of its
        # own, so its row lock lasts that statement, not the whole create. The merchant's profile
        # comes from memory when this process has read it; the index's statement reads it again,
        # so a create never uses a profile older than the moment its index was taken.
        async with pool.acquire() as conn:
            replayed = await Commands.replay(conn, scope, INVOICE_REPLY.decode, fingerprint)
            if replayed is not None:
                return replayed  # a retry: no new address index for it
            remembered = self.merchants.known(merchant_id, draft.network)
            profile = remembered or await self.merchants.profile(conn, merchant_id, shard, draft.network)
            rate, xpub, index, current = await self._allocate(conn, draft, profile)
            if remembered is not None and current != remembered:
                # The merchant changed since this process remembered it: the index just taken
                # stays unused (as when a create fails), and the create starts again from the
                # profile as it is now.
                profile = await self.merchants.profile(conn, merchant_id, shard, draft.network)
                rate, xpub, index, _ = await self._allocate(conn, draft, profile)
            if index > addresses.MAX_ADDRESS_INDEX:
                raise FailedPrecondition(f"the {draft.network} wallet has no unused addresses left")
            try:
                payment = payment_target(draft, xpub, index, rate, self._chain_id(draft.network))
            except ValueError as error:
                raise FailedPrecondition(
                    f"the merchant's {draft.network} wallet cannot be used: {error}"
                ) from None

            async def handle(conn: Connection) -> views.Invoice:
                invoice = Invoice.create(
                    invoice_id,
                    merchant_id=merchant_id,
                    draft=draft,
                    rate=rate,
                    payment=payment,
                    default_underpaid_percent=merchant_default_underpaid(profile.settings),
                    now=utcnow(),
                )
                _, row = await self.invoices.save_inline(
                    conn, invoice, lambda saved: projections.created(saved[0])
                )
                # Nothing received yet: the answer is the invoice as GetInvoice reads it.
                return views.invoice(row, amount_refundable=views.refundable(row, Decimal(0)))

            # No cache entry to drop: nothing can have cached an id that did not exist.
            return await Commands.run_on(
                conn,
                scope,
                handle,
                INVOICE_REPLY.encode,
                INVOICE_REPLY.decode,
                fingerprint,
                one_statement=True,
            )

    # -- lifecycle -------------------------------------------------------------------------------
    async def change(self, invoice_id: uuid.UUID, decide: Callable[[Invoice], object], *, actor: str) -> bool:
        """Loads the invoice, lets `decide` emit events, saves them with the read models; retried
        on a concurrent change. Used by the watchers and the expiry job. False: no such invoice."""
        pool = self.rt.pool_for(invoice_id)
        # A span for the work a background loop found (their idle polls record none): its SQL
        # hangs under it, and its events carry it to the relay and the consumers.
        with tracer.start_as_current_span(
            f"{actor} change invoice", attributes={"checkout.invoice.id": str(invoice_id)}
        ):
            return await self._change(pool, invoice_id, decide, actor=actor)

    async def _change(
        self, pool: asyncpg.Pool, invoice_id: uuid.UUID, decide: Callable[[Invoice], object], *, actor: str
    ) -> bool:
        token = context.use(
            context.RequestContext(
                actor=actor, request_id=f"{actor}:{uuid.uuid4()}", trace=telemetry.inject()
            )
        )
        changed = False
        try:
            for attempt in range(CHANGE_ATTEMPTS):
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        invoice = await self.invoices.get(conn, invoice_id)
                        if invoice is None:
                            return False
                        decide(invoice)
                        changed = bool(invoice.pending)
                        if changed:
                            await self._save(conn, invoice)
                    break
                except ConcurrencyError:
                    log.debug(
                        "invoice %s changed concurrently (attempt %d), retrying", invoice_id, attempt + 1
                    )
            else:
                raise ConcurrencyError(
                    f"invoice {invoice_id} kept changing: gave up after {CHANGE_ATTEMPTS} tries"
                )
        finally:
            context.reset(token)
        if changed:
            await self.rt.invalidate(invoice_id, cache.invoice_key(str(invoice_id)))
        return True

    async def cancel_invoice(
        self, merchant: str, invoice: str, reason: str, fingerprint: str
    ) -> views.Invoice:
        # From the primary: a replica behind the invoice's creation would call it not found.
        async with self.rt.pool_for(owned(merchant, invoice)).acquire() as db:
            row = await owned_row(merchant, invoice, db)
        invoice_id, merchant_id = row["id"], row["merchant_id"]

        async def handle(conn: Connection) -> views.Invoice:
            aggregate = await self.invoices.get(conn, invoice_id)
            assert aggregate is not None
            aggregate.cancel(reason, utcnow())
            await self._save(conn, aggregate)
            return await invoice_with_refunds(conn, merchant_id, invoice_id)

        scope = self._scope(f"CancelInvoice:{invoice_id}", merchant_id)
        return await self._invoice_command(self.rt.pool_for(invoice_id), scope, handle, fingerprint)

    # -- refunds ---------------------------------------------------------------------------------
    async def create_refund(self, ask: NewRefund, fingerprint: str) -> views.Refund:
        """The refund, with its claim token: shown in this answer only (a retry's has none)."""
        # From the primary: a replica behind the invoice's payments would misjudge what is left.
        invoice_id = owned(ask.merchant_id, ask.invoice_id)
        pool = self.rt.pool_for(invoice_id)
        async with pool.acquire() as db:
            row = await owned_row(ask.merchant_id, ask.invoice_id, db)
        asset = CRYPTO[row["crypto_currency"]]
        checked = refunds.check_request(
            ask.amount, ask.crypto_amount, ask.rate, ask.reason, currency=row["currency"], asset=asset
        )
        scope = self._scope(f"CreateRefund:{invoice_id}", row["merchant_id"])
        refund_id = ids.new_id(ids.slot_of(invoice_id))
        # The claim link's secret: only its hash goes into the event; the token is shown once.
        token = refund_id.hex + secrets.token_hex(24)

        async with pool.acquire() as conn:
            replayed = await Commands.replay(conn, scope, REFUND_REPLY.decode, fingerprint)
            if replayed is not None:
                return replayed  # a retry: no second quote for it
            rate = None
            if checked.basis == "current":
                # The market's rate: the merchant's spread was its margin on the sale, not on the refund.
                rate = await self._lock_rate(asset.symbol, row["currency"], Decimal(0))

            async def handle(conn: Connection) -> views.Refund:
                invoice = await self.invoices.get(conn, invoice_id)
                assert invoice is not None
                invoice.refund(
                    refund_id, checked, rate=rate, token_sha256=refunds.token_sha256(token), now=utcnow()
                )
                await self._save(conn, invoice)
                saved = await repository.refund(conn, refund_id)
                assert saved is not None
                return replace(views.refund(saved), claim_token=token)

            result = await Commands.run_on(
                conn, scope, handle, _without_token, REFUND_REPLY.decode, fingerprint
            )
        await self.rt.invalidate(invoice_id, cache.invoice_key(str(invoice_id)))
        return result

    async def cancel_refund(self, merchant: str, invoice: str, refund: str, fingerprint: str) -> views.Refund:
        invoice_id = owned(merchant, invoice)
        refund_id = ids.parse_id(refund)
        pool = self.rt.pool_for(invoice_id)
        async with pool.acquire() as db:
            row = await owned_row(merchant, invoice, db)
            found = await repository.refund(db, refund_id) if refund_id else None
        if refund_id is None or found is None or found["invoice_id"] != invoice_id:
            raise NotFound("refund not found")

        async def handle(conn: Connection) -> views.Refund:
            aggregate = await self.invoices.get(conn, invoice_id)
            assert aggregate is not None
            aggregate.cancel_refund(str(refund_id), "", utcnow())
            await self._save(conn, aggregate)
            saved = await repository.refund(conn, refund_id)
            assert saved is not None
            return views.refund(saved)

        scope = self._scope(f"CancelRefund:{refund_id}", row["merchant_id"])
        result = await Commands.run(
            pool, scope, handle, REFUND_REPLY.encode, REFUND_REPLY.decode, fingerprint
        )
        await self.rt.invalidate(invoice_id, cache.invoice_key(str(invoice_id)))
        return result

    @staticmethod
    def _claim_id(token: str) -> uuid.UUID:
        """The refund a claim token names (its secret is checked against the aggregate's hash by
        the caller); NotFound for a token that names none."""
        refund_id = ids.parse_id(refunds.refund_id_of_token(token) or "")
        if refund_id is None:
            raise NotFound("refund not found")
        return refund_id

    async def _claimed_refund(self, db: Connection, refund_id: uuid.UUID) -> asyncpg.Record:
        row = await repository.refund(db, refund_id)
        if row is None:
            raise NotFound("refund not found")
        return row

    async def get_refund_claim(self, claim_token: str) -> views.Refund:
        """The payer's view of a refund: by its claim token, checked against the aggregate's hash."""
        refund_id = self._claim_id(claim_token)
        async with self.rt.pool_for(refund_id).acquire() as db:
            row = await self._claimed_refund(db, refund_id)
            invoice = await self.invoices.get(db, row["invoice_id"])
        held = invoice.refunds.get(str(refund_id)) if invoice else None
        if held is None or not hmac.compare_digest(held.token_sha256, refunds.token_sha256(claim_token)):
            raise NotFound("refund not found")
        return views.refund(row).for_payer()

    async def claim_refund(self, claim_token: str, address: str) -> views.Refund:
        refund_id = self._claim_id(claim_token)
        pool = self.rt.pool_for(refund_id)
        async with pool.acquire() as db:
            invoice_id = (await self._claimed_refund(db, refund_id))["invoice_id"]

        async def handle(conn: Connection) -> views.Refund:
            invoice = await self.invoices.get(conn, invoice_id)
            assert invoice is not None
            invoice.claim_refund(
                str(refund_id), refunds.token_sha256(claim_token), address, addresses.payout_address, utcnow()
            )
            await self._save(conn, invoice)
            saved = await repository.refund(conn, refund_id)
            assert saved is not None
            return views.refund(saved).for_payer()

        token = context.use(replace(context.current(), actor="payer"))
        try:
            # No idempotency key: a second claim is refused (409), which is what a retry should learn.
            async with pool.acquire() as conn, conn.transaction():
                result = await handle(conn)
        finally:
            context.reset(token)
        await self.rt.invalidate(invoice_id, cache.invoice_key(str(invoice_id)))
        return result


def _without_token(answer: views.Refund) -> bytes:
    # Only the hash of a claim token is ever kept, so a replayed create answers without the
    # token: the link was shown once, to the first response (like an API key's plaintext).
    return REFUND_REPLY.encode(replace(answer, claim_token=""))
