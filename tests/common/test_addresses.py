"""Address derivation is checked against PUBLISHED vectors, never against this code's output.

Sources:
- BIP84 "Test vectors" (bitcoin/bips, bip-0084.mediawiki): mnemonic "abandon x11 about", account
  m/84'/0'/0' keys and the first receive addresses.
- The Ethereum addresses of that mnemonic at m/44'/60'/0'/0/{0,1,2}, as shown by MetaMask,
  ethers.js and most wallets (0x9858EfFD... is the widely published index-0 vector).
"""

from __future__ import annotations

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
    derive_bitcoin_address,
    derive_ethereum_address,
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
