"""Watch-only receive addresses, and the checks of addresses payers give.

The platform is non-custodial: merchants give an account-level extended PUBLIC key and each
invoice gets a fresh address derived from it. Extended private keys are refused outright so
that a pasted xprv is never parsed, cached or logged as if it were configuration.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum

from bip_utils import (  # type: ignore[import-untyped, unused-ignore]
    Base58ChecksumError,
    Base58Decoder,
    Bip32KeyError,
    Bip32KeyNetVersions,
    Bip32Secp256k1,
    EthAddrDecoder,
    EthAddrEncoder,
    P2PKHAddrDecoder,
    P2SHAddrDecoder,
    P2TRAddrDecoder,
    P2WPKHAddrDecoder,
    P2WPKHAddrEncoder,
)

__all__ = [
    "MAX_ADDRESS_INDEX",
    "InvalidExtendedKey",
    "check_ethereum_address",
    "derive_bitcoin_address",
    "derive_ethereum_address",
    "is_bitcoin_mainnet_address",
    "payout_address",
    "validate_bitcoin_xpub",
    "validate_ethereum_xpub",
]

# Non-hardened child numbers only: hardened children cannot be derived from a public key.
MAX_ADDRESS_INDEX = 2**31 - 1
_HARDENED = 2**31
_ACCOUNT_DEPTH = 3  # m / purpose' / coin_type' / account'
_EXTERNAL_CHAIN = 0  # BIP44 "change" level: 0 = receive addresses, 1 = change
_BITCOIN_HRP = "bc"

_BASE58_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]+", re.ASCII)
_ETH_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)


class InvalidExtendedKey(ValueError):
    """An extended key that cannot be used as a watch-only account key, and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidExtendedKey], tuple[str]]:
        return (type(self), (self.reason,))


class _Network(Enum):
    MAINNET = "mainnet"
    TESTNET = "testnet"


@dataclass(frozen=True)
class _Version:
    prefix: str
    private: bool
    network: _Network
    # What the SLIP-132 prefix announces, for error messages.
    script: str
    # The version bytes of the other half of the pair (pub <-> prv); bip_utils wants both.
    partner: bytes


def _pair(
    pub: str, prv: str, pub_prefix: str, prv_prefix: str, network: _Network, script: str
) -> dict[bytes, _Version]:
    pub_b, prv_b = bytes.fromhex(pub), bytes.fromhex(prv)
    return {
        pub_b: _Version(pub_prefix, False, network, script, prv_b),
        prv_b: _Version(prv_prefix, True, network, script, pub_b),
    }


# BIP32 and SLIP-132 version bytes, so a wrong key gets a precise reason, not just "invalid".
_VERSIONS: dict[bytes, _Version] = {
    **_pair("0488b21e", "0488ade4", "xpub", "xprv", _Network.MAINNET, "BIP32/BIP44"),
    **_pair("049d7cb2", "049d7878", "ypub", "yprv", _Network.MAINNET, "BIP49 P2SH-wrapped SegWit"),
    **_pair("04b24746", "04b2430c", "zpub", "zprv", _Network.MAINNET, "BIP84 native SegWit"),
    **_pair("0295b43f", "0295b005", "Ypub", "Yprv", _Network.MAINNET, "P2SH-wrapped SegWit multisig"),
    **_pair("02aa7ed3", "02aa7a99", "Zpub", "Zprv", _Network.MAINNET, "native SegWit multisig"),
    **_pair("043587cf", "04358394", "tpub", "tprv", _Network.TESTNET, "BIP32/BIP44"),
    **_pair("044a5262", "044a4e28", "upub", "uprv", _Network.TESTNET, "BIP49 P2SH-wrapped SegWit"),
    **_pair("045f1cf6", "045f18bc", "vpub", "vprv", _Network.TESTNET, "BIP84 native SegWit"),
    **_pair("024289ef", "024285b5", "Upub", "Uprv", _Network.TESTNET, "P2SH-wrapped SegWit multisig"),
    **_pair("02575483", "02575048", "Vpub", "Vprv", _Network.TESTNET, "native SegWit multisig"),
}

_PRIVATE_PREFIXES = frozenset(v.prefix for v in _VERSIONS.values() if v.private)

_PRIVATE_KEY_REFUSAL = (
    "this is an extended PRIVATE key ({prefix}); the platform is watch-only and never accepts "
    "private keys. Export the account's extended public key instead, and treat this private key "
    "as exposed."
)


def _decode_account_key(key: str, accepted: tuple[str, ...], expected: str) -> Bip32Secp256k1:
    """Check `key` is a mainnet, account-level, public extended key with an accepted prefix."""
    if not isinstance(key, str):
        raise TypeError(f"extended key must be str, got {type(key).__name__}")
    # Judged on the prefix alone so that even a mistyped private key is called what it is.
    if key[:4] in _PRIVATE_PREFIXES:
        raise InvalidExtendedKey(_PRIVATE_KEY_REFUSAL.format(prefix=key[:4]))
    if not 100 <= len(key) <= 120:
        # Every 78-byte extended key encodes to 111 characters: anything far off is not one.
        raise InvalidExtendedKey(
            f"not an extended key ({len(key)} characters, 111 expected); expected {expected}"
        )
    if _BASE58_RE.fullmatch(key) is None:
        raise InvalidExtendedKey(f"not a base58-encoded extended key; expected {expected}")
    try:
        raw: bytes = Base58Decoder.CheckDecode(key)
    except Base58ChecksumError:
        raise InvalidExtendedKey("checksum mismatch: the key is mistyped or truncated") from None
    if len(raw) != 78:
        raise InvalidExtendedKey(
            f"not an extended key: decodes to {len(raw)} bytes, not 78; expected {expected}"
        )
    version_bytes, depth = raw[:4], raw[4]
    child_number = int.from_bytes(raw[9:13], "big")
    key_data = raw[45:]
    version = _VERSIONS.get(version_bytes)

    # Private keys first: the refusal must win over every other complaint about the key.
    if (version is not None and version.private) or key_data[0] == 0:
        prefix = version.prefix if version is not None else f"version 0x{version_bytes.hex()}"
        raise InvalidExtendedKey(_PRIVATE_KEY_REFUSAL.format(prefix=prefix))
    if version is None:
        raise InvalidExtendedKey(f"unknown extended key version 0x{version_bytes.hex()}; expected {expected}")
    if version.network is not _Network.MAINNET:
        raise InvalidExtendedKey(f"{version.prefix} is a testnet key; expected {expected} for mainnet")
    if version.prefix not in accepted:
        raise InvalidExtendedKey(f"{version.prefix} is a {version.script} key; expected {expected}")
    if depth != _ACCOUNT_DEPTH or child_number < _HARDENED:
        # A key at another depth would still derive addresses, just not the wallet's ones:
        # payments would land where the merchant's wallet never looks.
        raise InvalidExtendedKey(
            f"not an account-level key: expected depth {_ACCOUNT_DEPTH} with a hardened account "
            f"index (m/purpose'/coin'/account'), got depth {depth}"
        )
    try:
        node: Bip32Secp256k1 = Bip32Secp256k1.FromExtendedKey(
            key, Bip32KeyNetVersions(version_bytes, version.partner)
        )
    except Bip32KeyError:
        raise InvalidExtendedKey("the public key is not a valid secp256k1 point") from None
    return node


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"index must be int, got {type(index).__name__}")
    if not 0 <= index <= MAX_ADDRESS_INDEX:
        raise ValueError(f"index must be between 0 and {MAX_ADDRESS_INDEX}, got {index}")
    return index


def _ethereum_account(xpub: str) -> Bip32Secp256k1:
    return _decode_account_key(xpub, ("xpub",), "an Ethereum account xpub (m/44'/60'/0')")


def _bitcoin_account(key: str) -> Bip32Secp256k1:
    # xpub is accepted too because many wallets export BIP84 accounts with the generic prefix.
    return _decode_account_key(key, ("zpub", "xpub"), "a BIP84 account zpub or xpub (m/84'/0'/0')")


def validate_ethereum_xpub(xpub: str) -> None:
    """Raise InvalidExtendedKey unless `xpub` is a mainnet account-level extended public key."""
    _ethereum_account(xpub)


# Decoding and checking an account key and deriving its receive chain cost more than the one child
# an invoice needs: kept per key (public keys only; a refused key raises and is never cached).
@functools.lru_cache(maxsize=4096)
def _ethereum_receive_chain(xpub: str) -> Bip32Secp256k1:
    return _ethereum_account(xpub).ChildKey(_EXTERNAL_CHAIN)


@functools.lru_cache(maxsize=4096)
def _bitcoin_receive_chain(key: str) -> Bip32Secp256k1:
    return _bitcoin_account(key).ChildKey(_EXTERNAL_CHAIN)


def derive_ethereum_address(xpub: str, index: int) -> str:
    """EIP-55 address at m/44'/60'/0'/0/`index`, derived from the account xpub."""
    _check_index(index)
    child = _ethereum_receive_chain(xpub).ChildKey(index)
    address: str = EthAddrEncoder.EncodeKey(child.PublicKey().KeyObject())
    return address


def validate_bitcoin_xpub(key: str) -> None:
    """Raise InvalidExtendedKey unless `key` is a mainnet BIP84 account zpub (or xpub)."""
    _bitcoin_account(key)


def derive_bitcoin_address(key: str, index: int) -> str:
    """Native SegWit (bc1q...) address at m/84'/0'/0'/0/`index`, from the account key."""
    _check_index(index)
    child = _bitcoin_receive_chain(key).ChildKey(index)
    address: str = P2WPKHAddrEncoder.EncodeKey(child.PublicKey().KeyObject(), hrp=_BITCOIN_HRP)
    return address


def check_ethereum_address(address: str, field: str) -> None:
    """ValueError unless `address` is 0x + 40 hex digits and, when mixed-case, EIP-55 correct."""
    if not isinstance(address, str):
        raise TypeError(f"{field} must be str, got {type(address).__name__}")
    if _ETH_ADDRESS_RE.fullmatch(address) is None:
        raise ValueError(f"{field} must be 0x followed by 40 hex digits, got {address!r}")
    hex_part = address[2:]
    # EIP-55: all-lower/all-upper carry no checksum; mixed case must match it (catches typos).
    if hex_part not in (hex_part.lower(), hex_part.upper()):
        try:
            EthAddrDecoder.DecodeAddr(address)
        except ValueError:
            raise ValueError(f"{field} fails its EIP-55 checksum: {address!r}") from None


def is_bitcoin_mainnet_address(address: str) -> bool:
    """Whether `address` decodes as a mainnet P2WPKH, P2TR, P2PKH or P2SH address."""
    decoders = (
        (P2WPKHAddrDecoder, {"hrp": _BITCOIN_HRP}),
        (P2TRAddrDecoder, {"hrp": _BITCOIN_HRP}),
        (P2PKHAddrDecoder, {"net_ver": b"\x00"}),
        (P2SHAddrDecoder, {"net_ver": b"\x05"}),
    )
    for decoder, params in decoders:
        try:
            decoder.DecodeAddr(address, **params)
        except ValueError:
            continue
        return True
    return False


def _eip55(address: str) -> str:
    """The EIP-55 checksummed spelling of a 0x address."""
    from bip_utils.addr.eth_addr import _EthAddrUtils  # type: ignore[import-untyped, unused-ignore]

    return "0x" + str(_EthAddrUtils.ChecksumEncode(address[2:].lower()))


def payout_address(network: str, address: str) -> str:
    """An address a payer gives to be paid on `network`, spelt as the watcher reports it (EVM:
    EIP-55 checksummed; Bitcoin: bech32 lower case, base58 as given). ValueError saying why not:
    a mixed-case EVM address must match its checksum, a Bitcoin one must decode for mainnet."""
    address = address.strip()
    if network == "ethereum":
        try:
            check_ethereum_address(address, "address")
        except ValueError as error:
            raise ValueError(str(error).removeprefix("address ")) from None
        return _eip55(address)
    if network == "bitcoin":
        spelt = address.lower() if address.lower().startswith(f"{_BITCOIN_HRP}1") else address
        if not is_bitcoin_mainnet_address(spelt):
            raise ValueError("must be a Bitcoin address (bech32 bc1..., or base58 1... / 3...)")
        return spelt
    raise ValueError(f"cannot check addresses on {network}")
