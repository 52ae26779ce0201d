"""Signed transactions on the dev chain: ETH and test-token transfers, the token's deployment,
and ganache's mining and snapshot calls.

Transactions are EIP-1559, signed here with eth-account and sent with eth_sendRawTransaction, as
a wallet would; the node's unlocked accounts are never used. Amounts are ints in base units
(wei, token units); nothing is a float.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address

from libs.common.evm_rpc import EvmRpc, RpcError, hex_int
from tools.devchain.accounts import DevAccount

ARTIFACT = Path(__file__).resolve().parent / "contracts" / "TestToken.json"
# keccak256("Transfer(address,address,uint256)"): topic 0 of every ERC-20 Transfer log.
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
_TRANSFER_SELECTOR = "a9059cbb"  # transfer(address,uint256)
_BALANCE_OF_SELECTOR = "70a08231"  # balanceOf(address)
_PRIORITY_FEE = 10**9  # 1 gwei
ETH_TRANSFER_GAS = 21_000
# An ERC-20 transfer to a new holder takes about 52,000. Sends that give it skip eth_estimateGas,
# which ganache 7 can leave hanging for a sender whose previous transaction waits for a block.
TOKEN_TRANSFER_GAS = 100_000


class TransactionFailed(RuntimeError):
    """The transaction was mined but reverted (receipt status 0)."""


class ReceiptTimeout(TimeoutError):
    """No receipt before the deadline: the transaction is not in a block yet."""


@dataclass(frozen=True)
class TokenArtifact:
    abi: list[dict[str, Any]]
    bytecode: str
    compiler: str


@cache
def token_artifact() -> TokenArtifact:
    data = json.loads(ARTIFACT.read_text())
    return TokenArtifact(abi=data["abi"], bytecode=data["bytecode"], compiler=data["compiler"])


def address_of(private_key: str) -> str:
    return str(Account.from_key(private_key).address)


def _word(value: int) -> str:
    return value.to_bytes(32, "big").hex()


def transfer_calldata(to: str, units: int) -> str:
    if units < 0:
        raise ValueError("a transfer amount cannot be negative")
    return "0x" + _TRANSFER_SELECTOR + _word(int(to, 16)) + _word(units)


# One lock per (node client, sender): a nonce is read and used by one send at a time, so several
# sends in a row (or at once) from an account get consecutive nonces.
_locks: weakref.WeakKeyDictionary[EvmRpc, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _sender_lock(rpc: EvmRpc, address: str) -> asyncio.Lock:
    return _locks.setdefault(rpc, {}).setdefault(address.lower(), asyncio.Lock())


async def _fees(rpc: EvmRpc) -> tuple[int, int]:
    latest = await rpc.call("eth_getBlockByNumber", "latest", False)
    base_fee = hex_int(latest.get("baseFeePerGas", "0x0"), "base fee")
    # Twice the base fee survives six full blocks of base-fee increases before a resend is needed.
    return 2 * base_fee + _PRIORITY_FEE, _PRIORITY_FEE


async def next_nonce(rpc: EvmRpc, address: str) -> int:
    """The nonce for `address`'s next transaction, counting those still waiting in the pool.

    ganache's "pending" transaction count ignores its pool, so with a block time two sends in a
    row would get the same nonce (and the second is refused as an underpriced replacement);
    txpool_content lists what is waiting.
    """
    nonce = await rpc.nonce(address)
    try:
        pool = await rpc.call("txpool_content")
    except RpcError:  # a node without the txpool API: "pending" is all there is
        return nonce
    for section in ("pending", "queued"):
        waiting = (pool.get(section) or {}).get(address.lower()) or {}
        for key in waiting:
            nonce = max(nonce, int(key, 0) + 1)
    return nonce


async def _unsigned(
    rpc: EvmRpc, from_key: str, *, to: str | None, value: int, data: str, gas: int | None
) -> dict[str, Any]:
    if value < 0:
        raise ValueError("a value cannot be negative")
    chain_id = await rpc.chain_id()
    max_fee, priority_fee = await _fees(rpc)
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "value": value,
        "data": data,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": priority_fee,
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    if gas is None:
        estimate_for = {"from": address_of(from_key), "value": hex(value), "data": data}
        if to is not None:
            estimate_for["to"] = tx["to"]
        estimate = hex_int(await rpc.call("eth_estimateGas", estimate_for), "gas estimate")
        gas = estimate + estimate // 4  # headroom: estimates are for the current state only
    tx["gas"] = gas
    return tx


async def signed_transaction(
    rpc: EvmRpc,
    from_key: str,
    *,
    nonce: int,
    to: str | None,
    value: int = 0,
    data: str = "0x",
    gas: int | None = None,
) -> bytes:
    """A signed raw transaction with the nonce the caller counted itself, to send (and, should
    the node lose it, send again: the same bytes can be mined once only)."""
    tx = await _unsigned(rpc, from_key, to=to, value=value, data=data, gas=gas)
    tx["nonce"] = nonce
    return bytes(Account.sign_transaction(tx, from_key).raw_transaction)


async def send_transaction(
    rpc: EvmRpc,
    from_key: str,
    *,
    to: str | None,
    value: int = 0,
    data: str = "0x",
    gas: int | None = None,
) -> str:
    """Sign and send; the transaction hash. `to=None` creates a contract from `data`."""
    tx = await _unsigned(rpc, from_key, to=to, value=value, data=data, gas=gas)
    sender = address_of(from_key)
    async with _sender_lock(rpc, sender):
        tx["nonce"] = await next_nonce(rpc, sender)
        signed = Account.sign_transaction(tx, from_key)
        return await rpc.send_raw_transaction(bytes(signed.raw_transaction))


async def send_eth(rpc: EvmRpc, from_key: str, to: str, wei: int) -> str:
    return await send_transaction(rpc, from_key, to=to, value=wei, gas=ETH_TRANSFER_GAS)


async def send_token(
    rpc: EvmRpc,
    from_key: str,
    token: str,
    to: str,
    units: int,
    *,
    gas: int | None = None,
) -> str:
    """`gas` None: estimated by the node (which refuses a transfer that would revert)."""
    return await send_transaction(rpc, from_key, to=token, data=transfer_calldata(to, units), gas=gas)


async def token_balance(rpc: EvmRpc, token: str, owner: str) -> int:
    data = "0x" + _BALANCE_OF_SELECTOR + _word(int(owner, 16))
    return hex_int(await rpc.call("eth_call", {"to": token, "data": data}, "latest"), "token balance")


async def wait_receipt(rpc: EvmRpc, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
    """The receipt once the transaction is mined; TransactionFailed if it reverted."""
    deadline = time.monotonic() + timeout
    while True:
        receipt = await rpc.receipt(tx_hash)
        if receipt is not None and receipt.get("blockNumber") is not None:
            if hex_int(receipt.get("status"), "receipt status") != 1:
                raise TransactionFailed(f"{tx_hash} reverted in block {hex_int(receipt['blockNumber'])}")
            return receipt
        if time.monotonic() > deadline:
            raise ReceiptTimeout(f"{tx_hash} was not mined within {timeout:.0f}s")
        await asyncio.sleep(0.05)


async def deploy_token(rpc: EvmRpc, from_key: str, timeout: float = 30.0) -> str:
    """Deploy the test USDC (the whole supply goes to the deployer); its checksummed address."""
    tx_hash = await send_transaction(rpc, from_key, to=None, data=token_artifact().bytecode)
    receipt = await wait_receipt(rpc, tx_hash, timeout)
    return str(to_checksum_address(receipt["contractAddress"]))


async def mine(rpc: EvmRpc, blocks: int = 1) -> int:
    """Mine `blocks` empty blocks now (ganache's evm_mine); the new block number."""
    if blocks < 1:
        raise ValueError("mine at least one block")
    await rpc.call("evm_mine", {"blocks": blocks})
    return await rpc.block_number()


async def snapshot(rpc: EvmRpc) -> str:
    """The chain's state now; revert() to it discards every block and transaction since."""
    return str(await rpc.call("evm_snapshot"))


async def revert(rpc: EvmRpc, snapshot_id: str) -> None:
    """Back to a snapshot (which is used up, with every later one)."""
    if await rpc.call("evm_revert", snapshot_id) is not True:
        raise RpcError("evm_revert", 0, f"unknown snapshot {snapshot_id}")


# What `make up` and the tests give every dev account but the deployer: plenty for any demo.
FUNDING_UNITS = 1_000_000 * 10**6


async def setup_token(rpc: EvmRpc, accounts: tuple[DevAccount, ...], timeout: float = 30.0) -> str:
    """Deploy the test USDC from accounts[0] and give each other account FUNDING_UNITS of it.

    The token's address; on a fresh chain it is always the same (account 0's first contract).
    Blocks are mined on the spot, so this takes no longer with a block time than without.
    """
    deployer = accounts[0].private_key
    deploy_hash = await send_transaction(rpc, deployer, to=None, data=token_artifact().bytecode)
    await mine(rpc)
    receipt = await wait_receipt(rpc, deploy_hash, timeout)
    token = str(to_checksum_address(receipt["contractAddress"]))
    hashes = [
        await send_token(rpc, deployer, token, a.address, FUNDING_UNITS, gas=TOKEN_TRANSFER_GAS)
        for a in accounts[1:]
    ]
    await mine(rpc)
    for tx_hash in hashes:
        await wait_receipt(rpc, tx_hash, timeout)
    return token
