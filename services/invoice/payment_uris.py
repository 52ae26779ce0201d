"""Payment URIs shown on an invoice (QR code, "open in wallet"): EIP-681 on EVM networks, BIP21
on Bitcoin. Invoice vocabulary, so it lives with the invoice service; the address checks it
relies on are libs/common/addresses.py's, shared with the merchant service.
"""

from __future__ import annotations

from decimal import Decimal

from libs.common.addresses import check_ethereum_address, is_bitcoin_mainnet_address
from services.invoice.pricing import CRYPTO, PricingError, to_base_units

_BTC_SATS_PER_COIN = 10**8
_BTC_MAX_SUPPLY = Decimal(21_000_000)
_ZERO = Decimal(0)


def _check_positive_int(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        # Floats included: 1e18 wei as a float is already off by up to 64 wei.
        raise TypeError(f"{field} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{field} must be greater than 0, got {value}")


def _chain_suffix(chain_id: int | None) -> str:
    if chain_id is None:
        return ""
    _check_positive_int(chain_id, "chain_id")
    return f"@{chain_id}"


def eip681_uri(address: str, amount_wei: int, chain_id: int | None = None) -> str:
    """EIP-681 native-ether payment request: ethereum:<address>[@<chain>]?value=<wei>.

    The value is an integer literal; EIP-681 also allows 2.4e18, which some wallets misread.
    """
    check_ethereum_address(address, "address")
    _check_positive_int(amount_wei, "amount_wei")
    return f"ethereum:{address}{_chain_suffix(chain_id)}?value={amount_wei}"


def eip681_erc20_uri(
    token_contract: str,
    recipient: str,
    amount_base_units: int,
    chain_id: int | None = None,
) -> str:
    """EIP-681 token transfer: ethereum:<contract>[@<chain>]/transfer?address=<to>&uint256=<n>."""
    check_ethereum_address(token_contract, "token_contract")
    check_ethereum_address(recipient, "recipient")
    _check_positive_int(amount_base_units, "amount_base_units")
    return (
        f"ethereum:{token_contract}{_chain_suffix(chain_id)}/transfer"
        f"?address={recipient}&uint256={amount_base_units}"
    )


def bip21_uri(address: str, amount_btc: Decimal) -> str:
    """BIP21 payment request: bitcoin:<address>?amount=<BTC>.

    The amount is written in plain decimal without trailing zeros ("0.00104167", "20.3"), as in
    BIP21's examples; more than 8 decimals is an error because it cannot be paid exactly.
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be str, got {type(address).__name__}")
    if not is_bitcoin_mainnet_address(address):
        raise ValueError(f"address is not a valid mainnet Bitcoin address: {address!r}")
    if not isinstance(amount_btc, Decimal):
        raise TypeError(f"amount_btc must be a Decimal, got {type(amount_btc).__name__}")
    if not amount_btc.is_finite() or not _ZERO < amount_btc <= _BTC_MAX_SUPPLY:
        raise ValueError(f"amount_btc must be greater than 0 and at most 21000000, got {amount_btc}")
    try:
        sats = to_base_units(amount_btc, CRYPTO["BTC"])
    except PricingError as exc:
        raise ValueError(f"amount_btc {exc.reason}: {amount_btc}") from None
    whole, fraction = divmod(sats, _BTC_SATS_PER_COIN)
    amount = f"{whole}.{fraction:08d}".rstrip("0").rstrip(".")
    return f"bitcoin:{address}?amount={amount}"
