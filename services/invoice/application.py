"""Invoice use cases: load, decide, append (with inline read models), return API messages."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal

import asyncpg
from checkout.invoice.v1 import invoice_pb2 as pb
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace

from libs.common import addresses, cache, context, ids, telemetry
from libs.common.db import Connection
from libs.common.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.common.eventstore import Commands, ConcurrencyError, Repository, utcnow
from libs.common.limits import (
    EXPORT_METADATA_COLUMNS_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    SEARCH_QUERY_MAX_CHARS,
)
from libs.common.protoconv import plain, struct, timestamp
from libs.common.replica_config import ANALYTICS, CUSTOMER, READ
from libs.common.replicas import ReplicaStatus
from libs.common.service import PerRuntime, Runtime
from services.invoice import history, payment_uris, projections, refunds, repository
from services.invoice.domain import Invoice
from services.invoice.inputs import LockedRate, PaymentTarget
from services.invoice.merchants import MerchantDirectory, MerchantProfile
from services.invoice.pricing import CRYPTO, FIAT_MINOR_UNITS, CryptoAsset, format_money, to_base_units
from services.invoice.rate_config import SpreadRateProvider, rate_provider_from_config
from services.invoice.rates import RateUnavailable
from services.invoice.requests import Draft, ItemInput, NewInvoice, check_supported, validate
from services.invoice.settings import merchant_default_underpaid, merchant_spread
from services.invoice.state import LIVE_PAYMENT_STATUSES, STATUSES

log = logging.getLogger("checkout.invoice")
tracer = trace.get_tracer("checkout.invoice")

# A watcher, the expiry job and a merchant's cancel can race on one invoice: reload and retry.
CHANGE_ATTEMPTS = 8
# What a merchant must add for each network, for the FailedPrecondition that says so.
WALLET_HINTS = {
    "ethereum": "an Ethereum account xpub (m/44'/60'/0') under wallets.ethereum",
    "bitcoin": "a BIP84 account zpub (m/84'/0'/0') under wallets.bitcoin",
}


def invoice_message(row: asyncpg.Record) -> pb.Invoice:
    exponent = FIAT_MINOR_UNITS[row["currency"]]
    decimals = CRYPTO[row["crypto_currency"]].decimals
    rate = row["exchange_rate"]
    return pb.Invoice(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        customer_id=str(row["customer_id"]) if row["customer_id"] else "",
        customer_email=row["customer_email"] or "",
        title=row["title"],
        description=row["description"] or "",
        items=[
            pb.LineItem(name=i["name"], quantity=i["quantity"], unit_price=i["unit_price"])
            for i in row["items"]
        ],
        subtotal=format_money(row["subtotal"], exponent),
        tax=format_money(row["tax"], exponent),
        total=format_money(row["total"], exponent),
        currency=row["currency"],
        crypto_currency=row["crypto_currency"],
        crypto_amount=format_money(row["crypto_amount"], decimals),
        amount_paid=format_money(row["amount_paid"], decimals),
        network=row["network"],
        address_index=row["address_index"],
        payment_address=row["payment_address"],
        payment_uri=row["payment_uri"],
        status=row["status"],
        exchange_rate=pb.ExchangeRate(
            rate=rate["rate"],
            source=rate["source"],
            pair=rate["pair"],
            fetched_at=timestamp(dt.datetime.fromisoformat(rate["fetched_at"])),
        ),
        payment_tolerance=pb.PaymentTolerance(
            underpaid_percent=row["payment_tolerance"]["underpaid_percent"]
        ),
        metadata=struct(row["metadata"]),
        expires_at=timestamp(row["expires_at"]),
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        paid_at=timestamp(row["paid_at"]),
        overpaid=row["overpaid"],
        paid_late=row["paid_late"],
        status_reason=row["status_reason"] or "",
        amount_refunded=format_money(row["amount_refunded"], decimals),
    )


def refund_message(row: asyncpg.Record) -> pb.Refund:
    asset = CRYPTO[row["crypto_currency"]]
    return pb.Refund(
        id=str(row["id"]),
        invoice_id=str(row["invoice_id"]),
        merchant_id=str(row["merchant_id"]),
        status=row["status"],
        amount=format_money(row["amount"], FIAT_MINOR_UNITS[row["currency"]]),
        currency=row["currency"],
        crypto_amount=format_money(row["crypto_amount"], asset.decimals),
        crypto_currency=row["crypto_currency"],
        amount_units=str(to_base_units(row["crypto_amount"], asset)),
        network=row["network"],
        rate=row["rate"],
        rate_basis=row["rate_basis"],
        reason=row["reason"] or "",
        address=row["address"] or "",
        tx_hash=row["tx_hash"] or "",
        created_at=timestamp(row["created_at"]),
        claimed_at=timestamp(row["claimed_at"]),
        completed_at=timestamp(row["completed_at"]),
        cancelled_at=timestamp(row["cancelled_at"]),
    )


def checkout_message(
    row: asyncpg.Record, payments: list[asyncpg.Record], refunded: list[asyncpg.Record]
) -> pb.CheckoutView:
    """The payer's view: what to pay, where, and by when; nothing else of the merchant's."""
    decimals = CRYPTO[row["crypto_currency"]].decimals
    return pb.CheckoutView(
        id=str(row["id"]),
        title=row["title"],
        status=row["status"],
        total=format_money(row["total"], FIAT_MINOR_UNITS[row["currency"]]),
        currency=row["currency"],
        crypto_currency=row["crypto_currency"],
        crypto_amount=format_money(row["crypto_amount"], decimals),
        amount_paid=format_money(row["amount_paid"], decimals),
        payment_address=row["payment_address"],
        payment_uri=row["payment_uri"],
        expires_at=timestamp(row["expires_at"]),
        overpaid=row["overpaid"],
        paid_late=row["paid_late"],
        network=row["network"],
        merchant_id=str(row["merchant_id"]),
        payments=[
            pb.CheckoutPayment(
                tx_hash=p["tx_hash"],
                amount=format_money(p["amount"], decimals),
                status=p["status"],
                confirmations=p["confirmations"],
                required_confirmations=p["required_confirmations"],
                late=p["late"],
            )
            for p in payments
        ],
        refunds=[_payer_refund(refund_message(r)) for r in refunded],
    )


def _limit(requested: int) -> int:
    limit = requested or PAGE_LIMIT_DEFAULT
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidArgument.field("limit", f"must be between 1 and {PAGE_LIMIT_MAX}")
    return limit


def _cursor(raw: str) -> uuid.UUID | None:
    if not raw:
        return None
    value = ids.parse_id(raw)
    if value is None:
        raise InvalidArgument.field("cursor", "is not a cursor this service issued")
    return value


def _window(after: Timestamp, before: Timestamp, name: str) -> tuple[dt.datetime, dt.datetime]:
    """An export's [after, before) window: both ends required (an export is always bounded)."""
    if not after.seconds and not after.nanos:
        raise InvalidArgument.field(f"{name}_after", "is required")
    if not before.seconds and not before.nanos:
        raise InvalidArgument.field(f"{name}_before", "is required")
    return after.ToDatetime(tzinfo=dt.UTC), before.ToDatetime(tzinfo=dt.UTC)


def _page(rows: list[asyncpg.Record], limit: int) -> pb.ListInvoicesResponse:
    page = rows[:limit]
    return pb.ListInvoicesResponse(
        invoices=[invoice_message(r) for r in page],
        next_cursor=str(page[-1]["id"]) if len(rows) > limit else "",
    )


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

    def _merchant(self, raw: str) -> uuid.UUID:
        merchant_id = ids.parse_id(raw)
        if merchant_id is None:
            raise NotFound("merchant not found")
        return merchant_id

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
        handle: Callable[[Connection], Awaitable[pb.Invoice]],
        request: Message,
    ) -> pb.Invoice:
        """An idempotent command returning the invoice (a retry gets the first answer), then the
        invoice's cached copy is dropped."""
        result = await Commands.run(
            pool,
            scope,
            handle,
            _encode,
            pb.Invoice.FromString,
            request_hash=hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest(),
        )
        await self.rt.invalidate(uuid.UUID(result.id), cache.invoice_key(result.id))
        return result

    async def _lock_rate(self, draft: Draft, spread: Decimal) -> LockedRate:
        try:
            quote = await self.rates.get_quote(draft.asset.symbol, draft.currency, spread_percent=spread)
        except RateUnavailable as error:
            raise FailedPrecondition(str(error)) from None
        return LockedRate(quote.rate, quote.source, quote.fetched_at, quote.pair)

    async def _allocate(
        self, conn: Connection, draft: Draft, profile: MerchantProfile
    ) -> tuple[LockedRate, str, int, MerchantProfile | None]:
        """The rate locked with the merchant's spread, the wallet's key and the next unused index
        of it, and the merchant's profile as the index's statement read it."""
        rate = await self._lock_rate(draft, merchant_spread(profile.settings))
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

    async def create_invoice(self, request: pb.CreateInvoiceRequest) -> pb.Invoice:
        merchant_id = self._merchant(request.merchant_id)
        pool = self.rt.pool_for(merchant_id)
        shard = self.rt.shard_of(merchant_id)
        tolerance = request.payment_tolerance if request.HasField("payment_tolerance") else None
        ask = NewInvoice(
            title=request.title,
            description=request.description,
            items=[ItemInput(i.name, i.quantity, i.unit_price) for i in request.items],
            tax=request.tax,
            currency=request.currency,
            crypto_currency=request.crypto_currency,
            customer_email=request.customer_email,
            customer_id=request.customer_id,
            expires_in_seconds=request.expires_in_seconds,
            underpaid_percent=tolerance.underpaid_percent
            if tolerance and tolerance.underpaid_percent
            else None,
            metadata=plain(request.metadata),
        )
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
        request_hash = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()

        # Everything but the write happens before it, on the same connection: the rate (maybe a
        # provider call) holds nothing open, and the address index is taken in a statement of its
        # own, so its row lock lasts that statement, not the whole create. The merchant's profile
        # comes from memory when this process has read it; the index's statement reads it again,
        # so a create never uses a profile older than the moment its index was taken.
        async with pool.acquire() as conn:
            replayed = await Commands.replay(conn, scope, pb.Invoice.FromString, request_hash)
            if replayed is not None:
                return replayed  # a retry: no new address index for it
            profile = self.merchants.known(merchant_id, draft.network)
            if profile is None:
                profile = await self.merchants.profile(conn, merchant_id, shard, draft.network)
                rate, xpub, index, _ = await self._allocate(conn, draft, profile)
            else:
                rate, xpub, index, current = await self._allocate(conn, draft, profile)
                if current != profile:
                    # The merchant changed since this process remembered it: the index just
                    # taken stays unused (as when a create fails), and the create starts again
                    # from the profile as it is now.
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

            async def handle(conn: Connection) -> pb.Invoice:
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
                created = invoice_message(row)
                # Nothing received yet: the answer is the invoice as GetInvoice reads it.
                created.amount_refundable = format_money(Decimal(0), CRYPTO[row["crypto_currency"]].decimals)
                return created

            # No cache entry to drop: nothing can have cached an id that did not exist.
            return await Commands.run_on(
                conn, scope, handle, _encode, pb.Invoice.FromString, request_hash, one_statement=True
            )

    async def get_invoice(self, request: pb.GetInvoiceRequest) -> pb.Invoice:
        merchant_id, invoice_id = ids.parse_id(request.merchant_id), ids.parse_id(request.invoice_id)
        # Another merchant's invoice is "not found", never "forbidden": nothing is learnt from it.
        if merchant_id is None or invoice_id is None or ids.slot_of(invoice_id) != ids.slot_of(merchant_id):
            raise NotFound("invoice not found")
        return await self.rt.read(
            READ, invoice_id, lambda db: self._invoice_with_refunds(db, merchant_id, invoice_id)
        )

    async def _invoice_with_refunds(
        self, db: Connection, merchant_id: uuid.UUID, invoice_id: uuid.UUID
    ) -> pb.Invoice:
        """One invoice as GetInvoice shows it: with its refunds and what is left to refund."""
        row = await repository.invoice(db, invoice_id)
        if row is None or row["merchant_id"] != merchant_id:
            raise NotFound("invoice not found")
        message = invoice_message(row)
        listed = await repository.refunds(db, invoice_id)
        message.refunds.extend(refund_message(r) for r in listed)
        held = sum(
            (r["crypto_amount"] for r in listed if r["status"] in refunds.HOLDING_STATUSES), Decimal(0)
        )
        received = await repository.received(db, invoice_id, LIVE_PAYMENT_STATUSES)
        decimals = CRYPTO[row["crypto_currency"]].decimals
        message.amount_refundable = format_money(max(Decimal(0), received - held), decimals)
        return message

    async def list_invoices(self, request: pb.ListInvoicesRequest) -> pb.ListInvoicesResponse:
        merchant_id = self._merchant(request.merchant_id)
        limit = _limit(request.limit)
        if request.status and request.status not in STATUSES:
            raise InvalidArgument.field("status", f"must be one of {', '.join(STATUSES)}")
        customer_id = ids.parse_id(request.customer_id) if request.customer_id else None
        if request.customer_id and customer_id is None:
            raise InvalidArgument.field("customer_id", "must be a UUID")
        where = repository.InvoiceFilter(
            merchant_id,
            status=request.status or None,
            created_after=request.created_after.ToDatetime(tzinfo=dt.UTC)
            if request.HasField("created_after")
            else None,
            created_before=request.created_before.ToDatetime(tzinfo=dt.UTC)
            if request.HasField("created_before")
            else None,
            customer_id=customer_id,
            before_id=_cursor(request.cursor),
        )
        rows = await self.rt.read(READ, merchant_id, lambda db: repository.invoices(db, where, limit + 1))
        return _page(rows, limit)

    async def search_invoices(self, request: pb.SearchInvoicesRequest) -> pb.ListInvoicesResponse:
        merchant_id = self._merchant(request.merchant_id)
        limit = _limit(request.limit)
        query = request.query.strip()
        if not query:
            raise InvalidArgument.field("query", "must not be blank")
        if len(query) > SEARCH_QUERY_MAX_CHARS:
            raise InvalidArgument.field("query", f"must be at most {SEARCH_QUERY_MAX_CHARS} characters")
        where = repository.InvoiceFilter(merchant_id, search=query, before_id=_cursor(request.cursor))
        rows = await self.rt.read(READ, merchant_id, lambda db: repository.invoices(db, where, limit + 1))
        return _page(rows, limit)

    async def get_checkout(self, request: pb.GetCheckoutRequest) -> pb.CheckoutView:
        invoice_id = ids.parse_id(request.invoice_id)
        if invoice_id is None:
            raise NotFound("invoice not found")

        async def view(db: Connection) -> pb.CheckoutView:
            row = await repository.invoice(db, invoice_id)
            if row is None:
                raise NotFound("invoice not found")
            return checkout_message(
                row, await repository.payments(db, invoice_id), await repository.refunds(db, invoice_id)
            )

        # The payer's page: the customer role (within 500 ms of the primary, per the seed).
        return await self.rt.read(CUSTOMER, invoice_id, view)

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

    def _owned(self, request_merchant: str, request_invoice: str) -> uuid.UUID:
        merchant_id, invoice_id = ids.parse_id(request_merchant), ids.parse_id(request_invoice)
        if merchant_id is None or invoice_id is None or ids.slot_of(invoice_id) != ids.slot_of(merchant_id):
            raise NotFound("invoice not found")
        return invoice_id

    async def _owned_row(self, request_merchant: str, request_invoice: str, db: Connection) -> asyncpg.Record:
        invoice_id = self._owned(request_merchant, request_invoice)
        row = await repository.invoice(db, invoice_id)
        if row is None or str(row["merchant_id"]) != request_merchant.lower():
            raise NotFound("invoice not found")
        return row

    async def cancel_invoice(self, request: pb.CancelInvoiceRequest) -> pb.Invoice:
        # From the primary: a replica behind the invoice's creation would call it not found.
        owned = self._owned(request.merchant_id, request.invoice_id)
        async with self.rt.pool_for(owned).acquire() as db:
            row = await self._owned_row(request.merchant_id, request.invoice_id, db)
        invoice_id, merchant_id = row["id"], row["merchant_id"]

        async def handle(conn: Connection) -> pb.Invoice:
            invoice = await self.invoices.get(conn, invoice_id)
            assert invoice is not None
            invoice.cancel(request.reason, utcnow())
            await self._save(conn, invoice)
            return await self._invoice_with_refunds(conn, merchant_id, invoice_id)

        scope = self._scope(f"CancelInvoice:{invoice_id}", merchant_id)
        return await self._invoice_command(self.rt.pool_for(invoice_id), scope, handle, request)

    # -- refunds ---------------------------------------------------------------------------------
    async def create_refund(self, request: pb.CreateRefundRequest) -> pb.Refund:
        # From the primary: a replica behind the invoice's payments would misjudge what is left.
        invoice_id = self._owned(request.merchant_id, request.invoice_id)
        pool = self.rt.pool_for(invoice_id)
        async with pool.acquire() as db:
            row = await self._owned_row(request.merchant_id, request.invoice_id, db)
        asset = CRYPTO[row["crypto_currency"]]
        ask = refunds.check_request(
            request.amount,
            request.crypto_amount,
            request.rate,
            request.reason,
            currency=row["currency"],
            asset=asset,
        )
        scope = self._scope(f"CreateRefund:{invoice_id}", row["merchant_id"])
        request_hash = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        refund_id = ids.new_id(ids.slot_of(invoice_id))
        # The claim link's secret: only its hash goes into the event; the token is shown once.
        token = refund_id.hex + secrets.token_hex(24)

        async with pool.acquire() as conn:
            replayed = await Commands.replay(conn, scope, pb.Refund.FromString, request_hash)
            if replayed is not None:
                return replayed  # a retry: no second quote for it
            rate = None
            if ask.basis == "current":
                try:
                    # The market's rate: the merchant's spread was its margin on the sale, not on the refund.
                    quote = await self.rates.get_quote(
                        asset.symbol, row["currency"], spread_percent=Decimal(0)
                    )
                except RateUnavailable as error:
                    raise FailedPrecondition(str(error)) from None
                rate = LockedRate(quote.rate, quote.source, quote.fetched_at, quote.pair)

            async def handle(conn: Connection) -> pb.Refund:
                invoice = await self.invoices.get(conn, invoice_id)
                assert invoice is not None
                invoice.refund(
                    refund_id, ask, rate=rate, token_sha256=refunds.token_sha256(token), now=utcnow()
                )
                await self._save(conn, invoice)
                saved = await repository.refund(conn, refund_id)
                assert saved is not None
                answer = refund_message(saved)
                answer.claim_token = token
                return answer

            result = await Commands.run_on(
                conn, scope, handle, _encode_refund, pb.Refund.FromString, request_hash
            )
        await self.rt.invalidate(invoice_id, cache.invoice_key(str(invoice_id)))
        return result

    async def cancel_refund(self, request: pb.CancelRefundRequest) -> pb.Refund:
        invoice_id = self._owned(request.merchant_id, request.invoice_id)
        refund_id = ids.parse_id(request.refund_id)
        pool = self.rt.pool_for(invoice_id)
        async with pool.acquire() as db:
            row = await self._owned_row(request.merchant_id, request.invoice_id, db)
            found = await repository.refund(db, refund_id) if refund_id else None
        if refund_id is None or found is None or found["invoice_id"] != invoice_id:
            raise NotFound("refund not found")

        async def handle(conn: Connection) -> pb.Refund:
            invoice = await self.invoices.get(conn, invoice_id)
            assert invoice is not None
            invoice.cancel_refund(str(refund_id), "", utcnow())
            await self._save(conn, invoice)
            saved = await repository.refund(conn, refund_id)
            assert saved is not None
            return refund_message(saved)

        scope = self._scope(f"CancelRefund:{refund_id}", row["merchant_id"])
        request_hash = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        result = await Commands.run(pool, scope, handle, _encode_refund, pb.Refund.FromString, request_hash)
        await self.rt.invalidate(invoice_id, cache.invoice_key(str(invoice_id)))
        return result

    async def _claimed_refund(self, db: Connection, token: str) -> asyncpg.Record:
        """The refund a claim token names (its secret is checked against the aggregate's hash by
        the caller); NotFound for a token that names none."""
        refund_id = ids.parse_id(refunds.refund_id_of_token(token) or "")
        row = await repository.refund(db, refund_id) if refund_id else None
        if row is None:
            raise NotFound("refund not found")
        return row

    async def get_refund_claim(self, request: pb.GetRefundClaimRequest) -> pb.Refund:
        """The payer's view of a refund: by its claim token, checked against the aggregate's hash."""
        refund_id = ids.parse_id(refunds.refund_id_of_token(request.claim_token) or "")
        if refund_id is None:
            raise NotFound("refund not found")
        async with self.rt.pool_for(refund_id).acquire() as db:
            row = await self._claimed_refund(db, request.claim_token)
            invoice = await self.invoices.get(db, row["invoice_id"])
        held = invoice.refunds.get(str(refund_id)) if invoice else None
        if held is None or not hmac.compare_digest(
            held.token_sha256, refunds.token_sha256(request.claim_token)
        ):
            raise NotFound("refund not found")
        return _payer_refund(refund_message(row))

    async def claim_refund(self, request: pb.ClaimRefundRequest) -> pb.Refund:
        refund_id = ids.parse_id(refunds.refund_id_of_token(request.claim_token) or "")
        if refund_id is None:
            raise NotFound("refund not found")
        pool = self.rt.pool_for(refund_id)
        async with pool.acquire() as db:
            invoice_id = (await self._claimed_refund(db, request.claim_token))["invoice_id"]

        async def handle(conn: Connection) -> pb.Refund:
            invoice = await self.invoices.get(conn, invoice_id)
            assert invoice is not None
            invoice.claim_refund(
                str(refund_id),
                refunds.token_sha256(request.claim_token),
                request.address,
                addresses.payout_address,
                utcnow(),
            )
            await self._save(conn, invoice)
            saved = await repository.refund(conn, refund_id)
            assert saved is not None
            return _payer_refund(refund_message(saved))

        token = context.use(replace(context.current(), actor="payer"))
        try:
            # No idempotency key: a second claim is refused (409), which is what a retry should learn.
            async with pool.acquire() as conn, conn.transaction():
                result = await handle(conn)
        finally:
            context.reset(token)
        await self.rt.invalidate(invoice_id, cache.invoice_key(str(invoice_id)))
        return result

    async def list_payments(self, request: pb.ListPaymentsRequest) -> pb.ListPaymentsResponse:
        async def payments(db: Connection) -> list[asyncpg.Record]:
            row = await self._owned_row(request.merchant_id, request.invoice_id, db)
            return await repository.payments(db, row["id"])

        invoice_id = self._owned(request.merchant_id, request.invoice_id)
        rows = await self.rt.read(READ, invoice_id, payments)
        return pb.ListPaymentsResponse(payments=[payment_message(r) for r in rows])

    async def list_merchant_payments(
        self, request: pb.ListMerchantPaymentsRequest
    ) -> pb.ListPaymentsResponse:
        merchant_id = self._merchant(request.merchant_id)
        limit = _limit(request.limit)
        after, before = _window(request.detected_after, request.detected_before, "detected")
        cursor = _cursor(request.cursor)
        rows = await self.rt.read(
            READ,
            merchant_id,
            lambda db: repository.merchant_payments(db, merchant_id, after, before, cursor, limit + 1),
        )
        page = rows[:limit]
        return pb.ListPaymentsResponse(
            payments=[payment_message(r) for r in page],
            next_cursor=str(page[-1]["id"]) if len(rows) > limit else "",
        )

    async def list_metadata_keys(self, request: pb.ListMetadataKeysRequest) -> pb.ListMetadataKeysResponse:
        merchant_id = self._merchant(request.merchant_id)
        after, before = _window(request.created_after, request.created_before, "created")
        most = EXPORT_METADATA_COLUMNS_MAX
        keys = await self.rt.read(
            READ, merchant_id, lambda db: repository.metadata_keys(db, merchant_id, after, before, most + 1)
        )
        return pb.ListMetadataKeysResponse(keys=keys[:most], truncated=len(keys) > most)

    async def list_audit_entries(self, request: pb.ListAuditEntriesRequest) -> pb.ListAuditEntriesResponse:
        invoice_id = self._owned(request.merchant_id, request.invoice_id)
        limit = _limit(request.limit)
        cursor = _cursor(request.cursor)
        row = await self.rt.read(
            READ, invoice_id, lambda db: self._owned_row(request.merchant_id, request.invoice_id, db)
        )
        rows = await history.audit_trail(self.rt, row, cursor, limit + 1)
        page = rows[:limit]
        return pb.ListAuditEntriesResponse(
            entries=[audit_message(r) for r in page],
            next_cursor=str(page[-1]["id"]) if len(rows) > limit else "",
        )

    async def get_shard_stats(self, request: pb.GetShardStatsRequest) -> pb.ShardStats:
        invoices = await self.rt.read_shard(ANALYTICS, request.shard, repository.count_invoices)
        return pb.ShardStats(
            shard=request.shard,
            invoices=invoices,
            replicas=[replica_message(r) for r in self.rt.replicas.status(request.shard)],
        )


def payment_message(row: asyncpg.Record) -> pb.Payment:
    decimals = CRYPTO[row["asset"]].decimals if row["asset"] in CRYPTO else 18
    message = pb.Payment(
        id=str(row["id"]),
        invoice_id=str(row["invoice_id"]),
        network=row["network"],
        tx_hash=row["tx_hash"],
        output_index=row["output_index"],
        asset=row["asset"],
        amount=format_money(row["amount"], decimals),
        from_address=row["from_address"] or "",
        to_address=row["to_address"],
        status=row["status"],
        confirmations=row["confirmations"],
        required_confirmations=row["required_confirmations"],
        block_hash=row["block_hash"] or "",
        late=row["late"],
        status_reason=row["status_reason"] or "",
        detected_at=timestamp(row["detected_at"]),
        confirmed_at=timestamp(row["confirmed_at"]),
    )
    if row["block_number"] is not None:
        message.block_number = row["block_number"]
    return message


def replica_message(status: ReplicaStatus) -> pb.ReplicaStatus:
    message = pb.ReplicaStatus(
        name=status.name, roles=status.roles, up=status.up, lagging=status.lagging, error=status.error
    )
    if status.lag_seconds is not None:
        message.lag_seconds = status.lag_seconds
    if status.lag_bytes is not None:
        message.lag_bytes = status.lag_bytes
    return message


def audit_message(row: asyncpg.Record) -> pb.AuditEntry:
    return pb.AuditEntry(
        id=str(row["id"]),
        invoice_id=str(row["invoice_id"]),
        event=row["event"],
        actor=row["actor"],
        timestamp=timestamp(row["timestamp"]),
        request_id=row["request_id"] or "",
        data=struct(row["data"]),
    )


def _encode(message: pb.Invoice) -> bytes:
    return message.SerializeToString()


def _encode_refund(message: pb.Refund) -> bytes:
    # Only the hash of a claim token is ever kept, so a replayed create answers without the
    # token: the link was shown once, to the first response (like an API key's plaintext).
    stored = pb.Refund()
    stored.CopyFrom(message)
    stored.claim_token = ""
    return stored.SerializeToString()


def _payer_refund(message: pb.Refund) -> pb.Refund:
    """What the payer sees of a refund: no merchant, no reason the merchant wrote for itself."""
    message.merchant_id = ""
    message.reason = ""
    return message


# The one application of a runtime, shared by its servicer and its shutdown hook.
app_of = PerRuntime(InvoiceApp)
