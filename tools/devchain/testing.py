"""What the `evm_chain` test fixture yields: a running dev chain with the test token deployed,
its accounts, and the transaction helpers bound to one node client.

    async def test_payment(evm_chain: EvmChain) -> None:
        tx = await evm_chain.send_eth(evm_chain.accounts[1], address, 10**16)
        await evm_chain.wait_receipt(tx)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from libs.common.evm_rpc import EvmRpc
from tools.devchain import tx
from tools.devchain.accounts import DevAccount, check_accounts, dev_accounts
from tools.devchain.chain import CHAIN_ID, DevChain, networks_json

Sender = DevAccount | str  # a dev account, or a private key


def _key(sender: Sender) -> str:
    return sender.private_key if isinstance(sender, DevAccount) else sender


@dataclass
class EvmChain:
    chain: DevChain
    rpc: EvmRpc
    token: str  # the test USDC (6 decimals); every account but 0 holds tx.FUNDING_UNITS of it
    accounts: tuple[DevAccount, ...]
    chain_id: int = CHAIN_ID

    @property
    def rpc_url(self) -> str:
        return self.chain.rpc_url

    def networks_json(
        self, *, confirmations: int = 1, poll_seconds: float = 0.2, start_block: int | None = None
    ) -> str:
        """CHECKOUT_NETWORKS for an invoice service watching this chain and its token."""
        return networks_json(
            self.rpc_url,
            self.token,
            chain_id=self.chain_id,
            confirmations=confirmations,
            poll_seconds=poll_seconds,
            start_block=start_block,
        )

    async def send_eth(self, sender: Sender, to: str, wei: int) -> str:
        return await tx.send_eth(self.rpc, _key(sender), to, wei)

    async def send_token(self, sender: Sender, to: str, units: int, *, token: str | None = None) -> str:
        return await tx.send_token(self.rpc, _key(sender), token or self.token, to, units)

    async def wait_receipt(self, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
        return await tx.wait_receipt(self.rpc, tx_hash, timeout)

    async def mine(self, blocks: int = 1) -> int:
        return await tx.mine(self.rpc, blocks)

    async def snapshot(self) -> str:
        return await tx.snapshot(self.rpc)

    async def revert(self, snapshot_id: str) -> None:
        await tx.revert(self.rpc, snapshot_id)

    async def balance(self, address: str) -> int:
        return await self.rpc.balance(address)

    async def token_balance(self, address: str) -> int:
        return await tx.token_balance(self.rpc, self.token, address)

    async def block_number(self) -> int:
        return await self.rpc.block_number()


@asynccontextmanager
async def evm_chain_on(chain: DevChain) -> AsyncIterator[EvmChain]:
    """Check a started chain's accounts, deploy and hand out the token, and yield the handle."""
    accounts = dev_accounts(chain.accounts)
    async with EvmRpc(chain.rpc_url) as rpc:
        await check_accounts(rpc, accounts)
        token = await tx.setup_token(rpc, accounts)
        yield EvmChain(chain=chain, rpc=rpc, token=token, accounts=accounts)
