"""Address derivation is checked against PUBLISHED vectors, never against this code's output.

Sources:
- BIP84 "Test vectors" (bitcoin/bips, bip-0084.mediawiki): mnemonic "abandon x11 about", account
  m/84'/0'/0' keys and the first receive addresses.
- The Ethereum addresses of that mnemonic at m/44'/60'/0'/0/{0,1,2}, as shown by MetaMask,
  ethers.js and most wallets (0x9858EfFD... is the widely published index-0 vector).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from bip_utils import (  # type: ignore[import-untyped, unused-ignore]
    Base58Decoder,
    Base58Encoder,
    Bip39SeedGenerator,
    Bip44,
    Bip44Changes,
    Bip44Coins,
)

from libs.common.addresses import (
    MAX_ADDRESS_INDEX,
    InvalidExtendedKey,
    bip21_uri,
    derive_bitcoin_address,
    derive_ethereum_address,
    eip681_erc20_uri,
    eip681_uri,
    validate_bitcoin_xpub,
    validate_ethereum_xpub,
)

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"

# BIP84 published vectors.
BIP84_ACCOUNT_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1"
    "ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
BIP84_ACCOUNT_ZPRV = (
    "zprvAdG4iTXWBoARxkkzNpNh8r6Qag3irQB8PzEMkAFeTRXxHpbF9z4QgEvBRmfvqWvGp42t42nvgGpNgYSJA9iefm"
    "1yYNZKEm7z6qUWCroSQnE"
)
BIP84_RECEIVE_0 = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
BIP84_RECEIVE_1 = "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"

# Published Ethereum addresses of MNEMONIC at m/44'/60'/0'/0/i.
ETH_ADDRESS_0 = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
ETH_ADDRESS_1 = "0x6Fac4D18c912343BF86fa7049364Dd4E424Ab9C0"
ETH_ADDRESS_2 = "0xb6716976A3ebe8D39aCEB04372f22Ff8e6802D7A"

# Circle's USDC contract on Ethereum mainnet (EIP-55 form).
USDC_CONTRACT = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"


def _eth_account() -> Any:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    return Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0)


# The account xpub is derived here with bip_utils (m/44'/60'/0'); the expected addresses are
# the published literals above, so the derivation under test is still checked independently.
ETH_ACCOUNT_XPUB: str = _eth_account().PublicKey().ToExtended()
ETH_ACCOUNT_XPRV: str = _eth_account().PrivateKey().ToExtended()
ETH_CHANGE_LEVEL_XPUB: str = _eth_account().Change(Bip44Changes.CHAIN_EXT).PublicKey().ToExtended()


def with_version(key: str, version_hex: str) -> str:
    """The same key material under other version bytes (e.g. the zpub as xpub or tpub)."""
    raw: bytes = Base58Decoder.CheckDecode(key)
    encoded: str = Base58Encoder.CheckEncode(bytes.fromhex(version_hex) + raw[4:])
    return encoded


def with_byte(key: str, offset: int, value: bytes) -> str:
    raw: bytes = Base58Decoder.CheckDecode(key)
    encoded: str = Base58Encoder.CheckEncode(raw[:offset] + value + raw[offset + len(value) :])
    return encoded


# --- Ethereum ------------------------------------------------------------------------------


def test_ethereum_address_0_matches_the_published_vector() -> None:
    assert derive_ethereum_address(ETH_ACCOUNT_XPUB, 0) == ETH_ADDRESS_0


def test_ethereum_addresses_1_and_2_match_the_published_vectors() -> None:
    assert derive_ethereum_address(ETH_ACCOUNT_XPUB, 1) == ETH_ADDRESS_1
    assert derive_ethereum_address(ETH_ACCOUNT_XPUB, 2) == ETH_ADDRESS_2


def test_ethereum_account_xpub_is_valid() -> None:
    validate_ethereum_xpub(ETH_ACCOUNT_XPUB)


def test_ethereum_xprv_is_rejected_as_a_private_key() -> None:
    with pytest.raises(InvalidExtendedKey, match="private key"):
        validate_ethereum_xpub(ETH_ACCOUNT_XPRV)
    with pytest.raises(InvalidExtendedKey, match="private key"):
        derive_ethereum_address(ETH_ACCOUNT_XPRV, 0)


def test_a_mistyped_xprv_is_still_called_a_private_key() -> None:
    mistyped = ETH_ACCOUNT_XPRV[:-1] + ("a" if ETH_ACCOUNT_XPRV[-1] != "a" else "b")
    with pytest.raises(InvalidExtendedKey, match="private key"):
        validate_ethereum_xpub(mistyped)


def test_private_key_refusal_does_not_echo_the_key() -> None:
    with pytest.raises(InvalidExtendedKey) as exc_info:
        validate_ethereum_xpub(ETH_ACCOUNT_XPRV)
    assert ETH_ACCOUNT_XPRV not in str(exc_info.value)
    assert ETH_ACCOUNT_XPRV[4:20] not in str(exc_info.value)


def test_private_key_data_under_a_public_version_is_rejected() -> None:
    # xprv payload relabelled with xpub version bytes: the 0x00 key prefix gives it away.
    disguised = with_version(ETH_ACCOUNT_XPRV, "0488b21e")
    with pytest.raises(InvalidExtendedKey, match="private key"):
        validate_ethereum_xpub(disguised)


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "xpub", "0x9858EfFD232B4033E47d90003D41EC34EcaEda94", "x" * 111, "0" * 111],
)
def test_garbage_is_rejected_as_an_invalid_extended_key(garbage: str) -> None:
    with pytest.raises(InvalidExtendedKey):
        validate_ethereum_xpub(garbage)


def test_a_one_character_typo_fails_the_checksum() -> None:
    typo = ETH_ACCOUNT_XPUB[:-1] + ("a" if ETH_ACCOUNT_XPUB[-1] != "a" else "b")
    with pytest.raises(InvalidExtendedKey, match="checksum"):
        validate_ethereum_xpub(typo)


def test_testnet_tpub_is_rejected_for_ethereum() -> None:
    tpub = with_version(ETH_ACCOUNT_XPUB, "043587cf")
    assert tpub.startswith("tpub")
    with pytest.raises(InvalidExtendedKey, match="testnet"):
        validate_ethereum_xpub(tpub)


def test_a_bitcoin_zpub_is_rejected_for_ethereum() -> None:
    with pytest.raises(InvalidExtendedKey, match="zpub"):
        validate_ethereum_xpub(BIP84_ACCOUNT_ZPUB)


def test_a_key_that_is_not_account_level_is_rejected() -> None:
    # m/44'/60'/0'/0 would "work" but derive m/44'/60'/0'/0/0/i, addresses no wallet shows.
    with pytest.raises(InvalidExtendedKey, match="depth"):
        validate_ethereum_xpub(ETH_CHANGE_LEVEL_XPUB)


def test_a_key_whose_point_is_not_on_the_curve_is_rejected() -> None:
    # 0x02 prefix with x = 2^256 - 1 is not a valid secp256k1 x coordinate.
    broken = with_byte(ETH_ACCOUNT_XPUB, 45, b"\x02" + b"\xff" * 32)
    with pytest.raises(InvalidExtendedKey, match="secp256k1"):
        validate_ethereum_xpub(broken)


def test_non_string_key_is_a_type_error() -> None:
    bad: Any = b"xpub"
    with pytest.raises(TypeError):
        validate_ethereum_xpub(bad)


# --- Bitcoin (BIP84) ----------------------------------------------------------------------


def test_bip84_receive_addresses_match_the_published_vectors() -> None:
    assert derive_bitcoin_address(BIP84_ACCOUNT_ZPUB, 0) == BIP84_RECEIVE_0
    assert derive_bitcoin_address(BIP84_ACCOUNT_ZPUB, 1) == BIP84_RECEIVE_1


def test_bip84_account_as_xpub_derives_the_same_addresses() -> None:
    xpub = with_version(BIP84_ACCOUNT_ZPUB, "0488b21e")
    assert xpub.startswith("xpub")
    validate_bitcoin_xpub(xpub)
    assert derive_bitcoin_address(xpub, 0) == BIP84_RECEIVE_0
    assert derive_bitcoin_address(xpub, 1) == BIP84_RECEIVE_1


def test_bip84_zpub_is_valid() -> None:
    validate_bitcoin_xpub(BIP84_ACCOUNT_ZPUB)


def test_published_bip84_zprv_is_rejected_as_a_private_key() -> None:
    with pytest.raises(InvalidExtendedKey, match="private key"):
        validate_bitcoin_xpub(BIP84_ACCOUNT_ZPRV)
    with pytest.raises(InvalidExtendedKey, match="private key"):
        derive_bitcoin_address(BIP84_ACCOUNT_ZPRV, 0)


def test_testnet_vpub_and_tpub_are_rejected_for_bitcoin() -> None:
    for version in ("045f1cf6", "043587cf"):
        with pytest.raises(InvalidExtendedKey, match="testnet"):
            validate_bitcoin_xpub(with_version(BIP84_ACCOUNT_ZPUB, version))


def test_ypub_is_rejected_because_it_is_not_native_segwit() -> None:
    with pytest.raises(InvalidExtendedKey, match="BIP49"):
        validate_bitcoin_xpub(with_version(BIP84_ACCOUNT_ZPUB, "049d7cb2"))


def test_garbage_is_rejected_for_bitcoin() -> None:
    with pytest.raises(InvalidExtendedKey):
        validate_bitcoin_xpub("zpub-not-really")


# --- index bounds -------------------------------------------------------------------------


def test_index_bounds_are_zero_to_two_to_the_31_minus_one() -> None:
    assert MAX_ADDRESS_INDEX == 2**31 - 1
    derive_ethereum_address(ETH_ACCOUNT_XPUB, MAX_ADDRESS_INDEX)
    derive_bitcoin_address(BIP84_ACCOUNT_ZPUB, MAX_ADDRESS_INDEX)
    for index in (-1, 2**31):
        with pytest.raises(ValueError, match="index"):
            derive_ethereum_address(ETH_ACCOUNT_XPUB, index)
        with pytest.raises(ValueError, match="index"):
            derive_bitcoin_address(BIP84_ACCOUNT_ZPUB, index)


@pytest.mark.parametrize("index", [True, 1.0, "1"])
def test_non_integer_index_is_a_type_error(index: Any) -> None:
    with pytest.raises(TypeError):
        derive_ethereum_address(ETH_ACCOUNT_XPUB, index)


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
