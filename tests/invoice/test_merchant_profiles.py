"""The invoice service's view of its merchants, next to a real merchant service: the
merchant_profiles projection, the gRPC fallback when it lags, the profile remembered between
creates, and what a merchant's wallets and settings do to a create."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import grpc
from checkout.invoice.v1 import invoice_pb2 as pb
from checkout.merchant.v1 import events_pb2 as merchant_ev
from checkout.merchant.v1 import merchant_pb2

from libs.common import events, ids
from libs.common.addresses import derive_ethereum_address
from libs.common.config import Config
from libs.common.messaging import Envelope
from libs.common.protoconv import struct, timestamp
from services.invoice import projections
from services.invoice.service import SPEC, InvoiceBuilt
from tests.common.support import ethereum_account_xpub, poll
from tests.invoice.test_invoice_service import (
    BTC_ADDRESS_0,
    BTC_ZPUB,
    CALLER,
    ETH_ADDRESS_0,
    ETH_XPUB,
    invoice_request,
    new_merchant,
    platform,
    rpc_error,
)
from tests.services import with_projections


async def test_invoice_right_after_the_wallet_is_saved_asks_the_merchant_service(config: Config) -> None:
    # Without its NATS consumer the projection never catches up by itself: only the gRPC
    # fallback can make these invoices succeed, so the test does not depend on timing.
    lagging = with_projections(SPEC, lambda own: ())
    async with platform(config, lagging) as p:
        merchant = await new_merchant(p, "fresh@shop.test", {"ethereum": ETH_XPUB})
        invoice = await p.invoices.CreateInvoice(invoice_request(merchant.id))
        assert invoice.payment_address == ETH_ADDRESS_0
        assert InvoiceBuilt.of(p.runtime).app.merchants.fetched == 1
        pool, merchant_id = p.pool(merchant.id), uuid.UUID(merchant.id)
        profile = "SELECT wallets FROM merchant_profiles WHERE merchant_id = $1"
        assert await pool.fetchval(profile, merchant_id) == {"ethereum": ETH_XPUB}

        # A projection row that predates the wallet (merchant.created seen, the update not yet).
        later = await new_merchant(p, "later@shop.test", {"bitcoin": BTC_ZPUB})
        later_id = uuid.UUID(later.id)
        await pool.execute(
            "INSERT INTO merchant_profiles (merchant_id, wallets, settings, updated_at) VALUES ($1, '{}', '{}', $2)",
            later_id,
            later.created_at.ToDatetime(tzinfo=dt.UTC) - dt.timedelta(seconds=1),
        )
        btc = await p.invoices.CreateInvoice(invoice_request(later.id, crypto_currency="BTC"))
        assert btc.payment_address == BTC_ADDRESS_0
        assert await pool.fetchval(profile, later_id) == {"bitcoin": BTC_ZPUB}

        bare = await new_merchant(p, "bare@shop.test")
        no_wallet = await rpc_error(p.invoices.CreateInvoice(invoice_request(bare.id)))
        assert no_wallet.code() == grpc.StatusCode.FAILED_PRECONDITION
        unknown = await rpc_error(
            p.invoices.CreateInvoice(invoice_request(str(ids.new_merchant_id("ghost@shop.test"))))
        )
        assert unknown.code() == grpc.StatusCode.NOT_FOUND and unknown.details() == "merchant not found"


async def test_a_remembered_profile_gives_way_to_the_merchants_new_wallet_and_spread(config: Config) -> None:
    # The service keeps the profile it read for the next create; the create checks it against
    # the projection in the statement that takes its address index.
    async with platform(config) as p:
        merchant = await new_merchant(p, "rewallet@shop.test", {"ethereum": ETH_XPUB})
        first = await p.invoices.CreateInvoice(invoice_request(merchant.id))
        assert first.payment_address == ETH_ADDRESS_0 and Decimal(first.exchange_rate.rate) == Decimal("2400")
        fetched = InvoiceBuilt.of(
            p.runtime
        ).app.merchants.fetched  # 1 if the projection had not seen the merchant yet
        new_xpub = ethereum_account_xpub(
            "legal winner thank year wave sausage worth useful legal winner thank yellow"
        )
        await p.merchants.UpdateMerchant(
            merchant_pb2.UpdateMerchantRequest(
                merchant_id=merchant.id,
                wallets={"ethereum": new_xpub},
                replace_wallets=True,
                settings=struct({"rate_spread_percent": "1.5"}),
                replace_settings=True,
            )
        )
        pool, merchant_id = p.pool(merchant.id), uuid.UUID(merchant.id)

        async def caught_up() -> bool:
            row = await pool.fetchrow(
                "SELECT wallets FROM merchant_profiles WHERE merchant_id = $1", merchant_id
            )
            return row is not None and row["wallets"].get("ethereum") == new_xpub

        await poll(caught_up, what="merchant.updated to reach the invoice service's projection")
        second = await p.invoices.CreateInvoice(invoice_request(merchant.id))
        assert second.payment_address == derive_ethereum_address(new_xpub, 0) != ETH_ADDRESS_0
        assert second.address_index == 0
        assert Decimal(second.exchange_rate.rate) == Decimal("2364")  # 2400 less the new 1.5 %
        assert (
            InvoiceBuilt.of(p.runtime).app.merchants.fetched == fetched
        )  # the projection answered, not gRPC


def merchant_envelope(message: Any, merchant: merchant_pb2.Merchant) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        type=events.type_of(message),
        aggregate_id=uuid.UUID(merchant.id),
        aggregate_type="Merchant",
        version=2,
        shard=merchant.shard,
        occurred_at=dt.datetime.now(dt.UTC),
        data=events.encode(message),
        metadata={},
    )


async def test_merchant_profiles_follow_merchant_events_and_ignore_older_ones(config: Config) -> None:
    async with platform(config) as p:
        tolerance = {"payment_tolerance": {"underpaid_percent": "2"}}
        merchant = await new_merchant(p, "follow@shop.test", {"bitcoin": BTC_ZPUB}, tolerance)
        pool, merchant_id = p.pool(merchant.id), uuid.UUID(merchant.id)

        async def profile() -> tuple[Any, Any] | None:
            row = await pool.fetchrow(
                "SELECT wallets, settings FROM merchant_profiles WHERE merchant_id = $1", merchant_id
            )
            return (row["wallets"], row["settings"]) if row else None

        async def caught_up() -> bool:
            return await profile() == ({"bitcoin": BTC_ZPUB}, tolerance)

        await poll(caught_up, what="merchant.created to reach the invoice service's projection")
        created_at = merchant.created_at.ToDatetime(tzinfo=dt.UTC)
        stale = merchant_ev.MerchantUpdated(
            merchant_id=merchant.id,
            settings=struct({}),
            settings_changed=True,
            wallets_changed=True,
            updated_at=timestamp(created_at - dt.timedelta(seconds=5)),
        )
        newer = merchant_ev.MerchantUpdated(
            merchant_id=merchant.id,
            settings=struct({"payment_tolerance": {"underpaid_percent": "3"}}),
            settings_changed=True,
            updated_at=timestamp(created_at + dt.timedelta(seconds=5)),
        )
        async with pool.acquire() as conn:
            # A redelivered, older change must not undo newer data.
            await projections.MerchantProfiles().apply(conn, merchant_envelope(stale, merchant))
            assert await caught_up()
            await projections.MerchantProfiles().apply(conn, merchant_envelope(newer, merchant))
        assert await profile() == ({"bitcoin": BTC_ZPUB}, {"payment_tolerance": {"underpaid_percent": "3"}})
        invoice = await p.invoices.CreateInvoice(invoice_request(merchant.id, crypto_currency="BTC"))
        assert invoice.payment_tolerance.underpaid_percent == "3"


async def test_missing_wallet_unknown_rate_and_unconfigured_token_are_failed_preconditions(
    config: Config,
) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "eth-only@shop.test", {"ethereum": ETH_XPUB})
        no_wallet = await rpc_error(
            p.invoices.CreateInvoice(invoice_request(merchant.id, crypto_currency="BTC"))
        )
        assert no_wallet.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "bitcoin wallet" in (no_wallet.details() or "")
        assert "wallets.bitcoin" in (no_wallet.details() or "")

        no_rate = await rpc_error(
            p.invoices.CreateInvoice(
                invoice_request(
                    merchant.id,
                    currency="JPY",
                    tax="0",
                    items=[pb.LineItem(name="Tea", quantity="1", unit_price="500")],
                )
            )
        )
        assert no_rate.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "ETH-JPY" in (no_rate.details() or "") and "fixed" in (no_rate.details() or "")

        token = await rpc_error(
            p.invoices.CreateInvoice(invoice_request(merchant.id, crypto_currency="USDC"))
        )
        assert token.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert token.details() == "USDC is not configured on this deployment"
        assert await p.pool(merchant.id).fetchval("SELECT count(*) FROM address_allocations") == 0


async def test_the_merchants_rate_spread_is_taken_off_the_locked_rate(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(
            p, "spread@shop.test", {"ethereum": ETH_XPUB}, {"rate_spread_percent": "1.5"}
        )
        created = await p.invoices.CreateInvoice(invoice_request(merchant.id), metadata=CALLER)
        # 2400.00 less 1.5%: the merchant is credited 2364 USD per ETH, so the payer sends more ETH.
        assert Decimal(created.exchange_rate.rate) == Decimal("2364")
        assert "1.5% spread" in created.exchange_rate.source
        assert created.crypto_amount == "0.004230118443316413"  # 10.00 / 2364, rounded up to the wei

        bad = await rpc_error(
            p.merchants.UpdateMerchant(
                merchant_pb2.UpdateMerchantRequest(
                    merchant_id=merchant.id,
                    settings=struct({"rate_spread_percent": "50"}),
                    replace_settings=True,
                )
            )
        )
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "rate_spread_percent" in (
            bad.details() or ""
        )
