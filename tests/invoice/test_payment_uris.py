"""Payment URIs, checked against the EIP-681 and BIP21 specifications' own forms and examples.

The addresses are the published vectors of tests/common/test_addresses.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.invoice.payment_uris import bip21_uri, eip681_erc20_uri, eip681_uri
from tests.common.test_addresses import BIP84_RECEIVE_0, ETH_ADDRESS_0

# Circle's USDC contract on Ethereum mainnet (EIP-55 form).
USDC_CONTRACT = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"


# --- EIP-681 ------------------------------------------------------------------------------


def test_eip681_uri_has_integer_wei_value() -> None:
    assert (
        eip681_uri(ETH_ADDRESS_0, 4_166_666_666_666_667)
        == "ethereum:0x9858EfFD232B4033E47d90003D41EC34EcaEda94?value=4166666666666667"
    )


def test_eip681_uri_never_uses_scientific_notation() -> None:
    uri = eip681_uri(ETH_ADDRESS_0, 10**24)
    assert uri.endswith("?value=1000000000000000000000000")


def test_eip681_uri_with_chain_id() -> None:
    assert (
        eip681_uri(ETH_ADDRESS_0, 1, chain_id=1)
        == "ethereum:0x9858EfFD232B4033E47d90003D41EC34EcaEda94@1?value=1"
    )
    assert eip681_uri(ETH_ADDRESS_0, 1, chain_id=11155111).startswith(
        "ethereum:0x9858EfFD232B4033E47d90003D41EC34EcaEda94@11155111?"
    )


def test_eip681_erc20_uri_is_a_transfer_call_on_the_token_contract() -> None:
    assert eip681_erc20_uri(USDC_CONTRACT, ETH_ADDRESS_0, 10_869_566) == (
        "ethereum:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48/transfer"
        "?address=0x9858EfFD232B4033E47d90003D41EC34EcaEda94&uint256=10869566"
    )


def test_eip681_erc20_uri_with_chain_id() -> None:
    assert eip681_erc20_uri(USDC_CONTRACT, ETH_ADDRESS_0, 1, chain_id=1) == (
        "ethereum:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48@1/transfer"
        "?address=0x9858EfFD232B4033E47d90003D41EC34EcaEda94&uint256=1"
    )


def test_eip681_example_from_the_eip_is_reproduced() -> None:
    # EIP-681's own ERC-20 example uses lower-case (un-checksummed) addresses.
    assert eip681_erc20_uri(
        "0x89205a3a3b2a69de6dbf7f01ed13b2108b2c43e7", "0x8e23ee67d1332ad560396262c48ffbb01f93d052", 1
    ) == (
        "ethereum:0x89205a3a3b2a69de6dbf7f01ed13b2108b2c43e7/transfer"
        "?address=0x8e23ee67d1332ad560396262c48ffbb01f93d052&uint256=1"
    )


def test_eip681_rejects_an_address_with_a_bad_checksum() -> None:
    bad_case = "0x9858effD232B4033E47d90003D41EC34EcaEda94"
    with pytest.raises(ValueError, match="EIP-55"):
        eip681_uri(bad_case, 1)
    with pytest.raises(ValueError, match="recipient"):
        eip681_erc20_uri(USDC_CONTRACT, bad_case, 1)


@pytest.mark.parametrize(
    "address", ["", "0x123", "9858EfFD232B4033E47d90003D41EC34EcaEda94", "0x" + "g" * 40]
)
def test_eip681_rejects_malformed_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        eip681_uri(address, 1)


def test_eip681_rejects_float_and_non_positive_amounts() -> None:
    bad: Any = 1e18
    with pytest.raises(TypeError):
        eip681_uri(ETH_ADDRESS_0, bad)
    with pytest.raises(TypeError):
        eip681_erc20_uri(USDC_CONTRACT, ETH_ADDRESS_0, bad)
    with pytest.raises(ValueError):
        eip681_uri(ETH_ADDRESS_0, 0)
    with pytest.raises(ValueError):
        eip681_uri(ETH_ADDRESS_0, 1, chain_id=0)


# --- BIP21 --------------------------------------------------------------------------------


def test_bip21_uri_has_plain_decimal_amount() -> None:
    assert (
        bip21_uri(BIP84_RECEIVE_0, Decimal("0.00020834"))
        == "bitcoin:bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu?amount=0.00020834"
    )


@pytest.mark.parametrize(
    ("amount", "written"),
    [
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("20.30000000"), "20.3"),
        (Decimal("50"), "50"),
        (Decimal("5E+1"), "50"),
        (Decimal("0.1"), "0.1"),
    ],
)
def test_bip21_amount_is_never_in_exponent_form(amount: Decimal, written: str) -> None:
    assert bip21_uri(BIP84_RECEIVE_0, amount) == f"bitcoin:{BIP84_RECEIVE_0}?amount={written}"


def test_bip21_rejects_more_than_8_decimals() -> None:
    with pytest.raises(ValueError, match="decimal places"):
        bip21_uri(BIP84_RECEIVE_0, Decimal("0.000000001"))


def test_bip21_rejects_float_and_non_positive_amounts() -> None:
    bad: Any = 0.1
    with pytest.raises(TypeError):
        bip21_uri(BIP84_RECEIVE_0, bad)
    for amount in ("0", "-1", "NaN", "21000001"):
        with pytest.raises(ValueError):
            bip21_uri(BIP84_RECEIVE_0, Decimal(amount))


def test_bip21_rejects_invalid_and_non_mainnet_addresses() -> None:
    for address in (
        "",
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyv",
        ETH_ADDRESS_0,
        "tb1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
        "bc1q?amount=1",
    ):
        with pytest.raises(ValueError):
            bip21_uri(address, Decimal("1"))


def test_bip21_accepts_legacy_and_p2sh_addresses() -> None:
    # The genesis-block coinbase address and the Bitcoin wiki's P2SH example address.
    assert bip21_uri("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", Decimal("1")).endswith("?amount=1")
    assert bip21_uri("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", Decimal("1")).endswith("?amount=1")
