"""What the payer's page says, decided without a browser: amounts, the asset and chain, when a page
stops following its invoice, and the dashboard's per-day sums."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from checkout.invoice.v1 import invoice_pb2
from google.protobuf import timestamp_pb2

from services.gateway.pages import charts
from services.gateway.pages.payer import EXPIRED_WATCH_SECONDS, PayerPage, asset_of, owed, plain

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYEE = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"


def view(**fields: object) -> invoice_pb2.CheckoutView:
    return invoice_pb2.CheckoutView(**fields)  # type: ignore[arg-type]


def stamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def test_amounts_lose_trailing_zeros_and_nothing_else() -> None:
    assert plain("0.010416666666666667") == "0.010416666666666667"
    assert plain("0.010000000000000000") == "0.01"
    assert plain("24.000000") == "24"
    assert plain("1000") == "1000"
    assert plain(Decimal("0E-18")) == "0"


def test_what_is_owed_is_exact_and_never_negative() -> None:
    assert owed(view(crypto_amount="0.010416666666666667", amount_paid="0.000000000000000001")) == (
        "0.010416666666666666"
    )
    assert owed(view(crypto_amount="24.000000", amount_paid="30.000000")) == "0"


def test_a_token_invoice_names_the_token_its_contract_and_the_chain() -> None:
    asset = asset_of(
        view(
            crypto_currency="USDC",
            network="ethereum",
            payment_uri=f"ethereum:{TOKEN}@1337/transfer?address={PAYEE}&uint256=24000000",
        )
    )
    assert (asset.symbol, asset.token_contract, asset.chain) == ("USDC", TOKEN, "Ethereum (chain id 1337)")
    assert "Do not send the chain's own coin" in asset.instruction


def test_the_main_networks_are_named_without_a_chain_number() -> None:
    eth = asset_of(view(crypto_currency="ETH", network="ethereum", payment_uri=f"ethereum:{PAYEE}@1?value=1"))
    btc = asset_of(view(crypto_currency="BTC", network="bitcoin", payment_uri="bitcoin:bc1qxyz?amount=0.1"))
    assert (eth.chain, eth.token_contract) == ("Ethereum mainnet", None)
    assert (btc.chain, btc.instruction) == (
        "Bitcoin",
        "Send BTC on Bitcoin. Tokens sent to this address do not pay this invoice.",
    )


def test_an_expired_page_keeps_watching_for_a_late_sighting_then_stops() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    expired = view(status="expired", expires_at=stamp(now))
    assert not PayerPage.of(expired, None, now + dt.timedelta(seconds=EXPIRED_WATCH_SECONDS - 1)).final
    assert PayerPage.of(expired, None, now + dt.timedelta(seconds=EXPIRED_WATCH_SECONDS + 1)).final
    assert PayerPage.of(view(status="confirmed"), None, now).final
    assert not PayerPage.of(view(status="paid"), None, now).final


def test_paid_says_how_far_the_slowest_counted_payment_has_come() -> None:
    page = PayerPage.of(
        view(
            status="paid",
            crypto_currency="ETH",
            crypto_amount="0.02",
            amount_paid="0.02",
            payments=[
                invoice_pb2.CheckoutPayment(
                    tx_hash="0xa",
                    amount="0.01",
                    status="confirmed",
                    confirmations=5,
                    required_confirmations=3,
                ),
                invoice_pb2.CheckoutPayment(
                    tx_hash="0xb",
                    amount="0.01",
                    status="confirming",
                    confirmations=1,
                    required_confirmations=3,
                ),
                invoice_pb2.CheckoutPayment(
                    tx_hash="0xc",
                    amount="0.5",
                    status="confirming",
                    confirmations=0,
                    required_confirmations=3,
                    late=True,
                ),
            ],
        ),
        None,
    )
    assert page.detail == "0.02 ETH received. Waiting for the network to confirm it: 1 of 3 confirmations."
    assert [p.progress for p in page.payments] == ["3 of 3", "1 of 3", "0 of 3"]


def test_a_day_without_rows_is_drawn_as_zeros_and_conversion_comes_from_the_summed_counts() -> None:
    rows: list[dict[str, object]] = [
        {
            "metric_date": "2026-01-02",
            "currency": "USD",
            "invoices_created": 3,
            "invoices_paid": 1,
            "amount_paid": "10.00",
        },
        {
            "metric_date": "2026-01-02",
            "currency": "EUR",
            "invoices_created": 1,
            "invoices_paid": 1,
            "amount_paid": "5.00",
        },
    ]
    days = charts.days_of(rows, dt.date(2026, 1, 1), dt.date(2026, 1, 3))
    assert [d.date for d in days] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert (days[0].created, days[0].conversion) == (0, Decimal(0))
    assert (days[1].created, days[1].paid, days[1].conversion) == (4, 2, Decimal("50.00"))
    assert days[1].amounts_paid == {"USD": Decimal("10.00"), "EUR": Decimal("5.00")}
    svg = charts.bar_chart(
        "Revenue",
        [d.date for d in days],
        [charts.Series("paid", "paid", [Decimal(1), Decimal(2), Decimal(0)])],
    )
    assert svg.count("<rect") == 3 and 'data-value="2"' in svg and 'role="img"' in svg


def test_the_flags_are_said_in_words_with_the_amount_overpaid() -> None:
    page = PayerPage.of(
        view(
            status="expired",
            crypto_currency="ETH",
            crypto_amount="0.010000000000000000",
            amount_paid="0.012500000000000000",
            overpaid=True,
            paid_late=True,
        ),
        None,
    )
    assert page.notes == [
        "Overpaid: 0.0025 ETH more than the invoice asked. The merchant can refund it.",
        "Paid late: a payment arrived after the invoice closed. It is recorded but does not pay this invoice; "
        "contact the merchant.",
    ]
    assert page.live().notes == page.notes and page.live().payable is False
