"""The dev chain's funded accounts: BIP44 keys from the well-known test mnemonic.

The same mnemonic as Hardhat's and Anvil's defaults, so the addresses are familiar
(account 0 is 0xf39F…2266). Public test keys: never send anything of value to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins

from libs.common.evm_rpc import EvmRpc

MNEMONIC = "test test test test test test test test test test test junk"
ACCOUNT_COUNT = 10
BALANCE_ETH = 1000  # ganache's default per account


@dataclass(frozen=True)
class DevAccount:
    index: int
    address: str  # EIP-55 checksummed
    private_key: str  # 0x-prefixed hex

    def __repr__(self) -> str:  # keep keys out of test failure output and logs
        return f"DevAccount({self.index}, {self.address})"


class AccountMismatch(RuntimeError):
    """The node's accounts are not the ones derived from MNEMONIC."""


@cache
def dev_accounts(count: int = ACCOUNT_COUNT) -> tuple[DevAccount, ...]:
    """m/44'/60'/0'/0/i for i < count."""
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    external = (
        Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0).Change(Bip44Changes.CHAIN_EXT)
    )
    accounts = []
    for index in range(count):
        node = external.AddressIndex(index)
        accounts.append(
            DevAccount(index, node.PublicKey().ToAddress(), "0x" + node.PrivateKey().Raw().ToHex())
        )
    return tuple(accounts)


async def check_accounts(rpc: EvmRpc, accounts: tuple[DevAccount, ...] | None = None) -> None:
    """Raise AccountMismatch unless eth_accounts lists exactly our derived addresses, in order."""
    ours = [a.address.lower() for a in (accounts or dev_accounts())]
    theirs = [str(a).lower() for a in await rpc.call("eth_accounts")]
    if theirs[: len(ours)] != ours:
        raise AccountMismatch(f"the node's accounts {theirs} are not those of the test mnemonic {ours}")
