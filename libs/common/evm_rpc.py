"""A small async client for an EVM node's JSON-RPC API (geth, ganache, anvil, …).

Only what the watcher and the dev tools use. Quantities travel as hex strings on the wire and
as Python ints here; nothing is ever a float.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx

__all__ = ["EvmRpc", "RpcError", "RpcUnavailable", "hex_int", "to_hex"]


class RpcUnavailable(Exception):
    """The node could not be reached, or answered with something that is not JSON-RPC."""


class RpcError(Exception):
    """The node answered the call with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


def to_hex(value: int) -> str:
    return hex(value)


def hex_int(value: Any, what: str = "quantity") -> int:
    """A JSON-RPC quantity ("0x1a") as an int; anything else is the node's fault."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcUnavailable(f"{what} is not a hex quantity: {value!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcUnavailable(f"{what} is not a hex quantity: {value!r}") from None


class EvmRpc:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._http = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EvmRpc:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def call(self, method: str, *params: Any) -> Any:
        request_id = next(self._ids)
        payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        try:
            response = await self._http.post(self.url, json=payload)
        except httpx.HTTPError as error:
            raise RpcUnavailable(f"{method}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise RpcUnavailable(f"{method}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise RpcUnavailable(f"{method}: the answer is not JSON") from None
        if not isinstance(body, dict) or body.get("id") != request_id:
            raise RpcUnavailable(f"{method}: the answer is not a JSON-RPC response to this call")
        failure = body.get("error")
        if failure is not None:
            if not isinstance(failure, dict):
                raise RpcUnavailable(f"{method}: malformed error {failure!r}")
            raise RpcError(
                method, int(failure.get("code", 0)), str(failure.get("message", "")), failure.get("data")
            )
        if "result" not in body:
            raise RpcUnavailable(f"{method}: the answer has no result")
        return body["result"]

    async def chain_id(self) -> int:
        return hex_int(await self.call("eth_chainId"), "chain id")

    async def block_number(self) -> int:
        return hex_int(await self.call("eth_blockNumber"), "block number")

    async def block(self, number: int, *, full: bool = True) -> dict[str, Any] | None:
        """The block at a height (with full transactions), or None beyond the tip."""
        result = await self.call("eth_getBlockByNumber", to_hex(number), full)
        if result is not None and not isinstance(result, dict):
            raise RpcUnavailable(f"eth_getBlockByNumber: not a block: {result!r}")
        return result

    async def logs(
        self, from_block: int, to_block: int, addresses: list[str], topics: list[Any]
    ) -> list[Any]:
        result = await self.call(
            "eth_getLogs",
            {
                "fromBlock": to_hex(from_block),
                "toBlock": to_hex(to_block),
                "address": addresses,
                "topics": topics,
            },
        )
        if not isinstance(result, list):
            raise RpcUnavailable(f"eth_getLogs: not a list: {result!r}")
        return result

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        result = await self.call("eth_getTransactionReceipt", tx_hash)
        if result is not None and not isinstance(result, dict):
            raise RpcUnavailable(f"eth_getTransactionReceipt: not a receipt: {result!r}")
        return result

    async def balance(self, address: str) -> int:
        return hex_int(await self.call("eth_getBalance", address, "latest"), "balance")

    async def nonce(self, address: str) -> int:
        return hex_int(await self.call("eth_getTransactionCount", address, "pending"), "nonce")

    async def send_raw_transaction(self, raw: bytes) -> str:
        return str(await self.call("eth_sendRawTransaction", "0x" + raw.hex()))
