"""A loopback Esplora server over a small in-memory chain that a test drives.

It answers the endpoints the watcher uses in Esplora's own formats (API.md of
Blockstream/esplora): `/blocks/tip/height`, `/blocks/tip/hash`, `/block-height/:h`, `/tx/:txid`,
`/tx/:txid/status`, `/address/:a/txs` (up to 50 mempool + 25 confirmed, newest first) and
`/address/:a/txs/chain[/:last_seen_txid]` (25 a page). Like a real node, a reorg returns the
orphaned blocks' transactions to the mempool unless the test says they were double-spent.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GENESIS_TIME = 1_700_000_000
FUNDING_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP173's example P2WPKH


def _hash(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _script(address: str) -> str:
    return "0014" + _hash("script", address)[:40]


@dataclass
class FakeTx:
    txid: str
    outputs: list[tuple[str | None, int]]  # (address or None for OP_RETURN, sats)
    from_address: str | None  # None: a coinbase transaction

    def to_json(self, status: dict[str, Any]) -> dict[str, Any]:
        if self.from_address is None:
            vin: list[dict[str, Any]] = [
                {
                    "txid": "0" * 64,
                    "vout": 4294967295,
                    "prevout": None,
                    "scriptsig": "03a0bb0d",
                    "scriptsig_asm": "OP_PUSHBYTES_3 a0bb0d",
                    "witness": ["0" * 64],
                    "is_coinbase": True,
                    "sequence": 4294967295,
                }
            ]
        else:
            vin = [
                {
                    "txid": _hash("prev", self.txid),
                    "vout": 0,
                    "prevout": {
                        "scriptpubkey": _script(self.from_address),
                        "scriptpubkey_asm": "OP_0 OP_PUSHBYTES_20 " + _script(self.from_address)[4:],
                        "scriptpubkey_type": "v0_p2wpkh",
                        "scriptpubkey_address": self.from_address,
                        "value": sum(v for _, v in self.outputs) + 1_000,
                    },
                    "scriptsig": "",
                    "scriptsig_asm": "",
                    "witness": ["3044" + "00" * 68, "02" + "11" * 32],
                    "is_coinbase": False,
                    "sequence": 4294967293,
                }
            ]
        vout: list[dict[str, Any]] = []
        for address, value in self.outputs:
            if address is None:
                vout.append(
                    {
                        "scriptpubkey": "6a0474657374",
                        "scriptpubkey_asm": "OP_RETURN OP_PUSHBYTES_4 74657374",
                        "scriptpubkey_type": "op_return",
                        "value": value,
                    }
                )
            else:
                vout.append(
                    {
                        "scriptpubkey": _script(address),
                        "scriptpubkey_asm": "OP_0 OP_PUSHBYTES_20 " + _script(address)[4:],
                        "scriptpubkey_type": "v0_p2wpkh",
                        "scriptpubkey_address": address,
                        "value": value,
                    }
                )
        return {
            "txid": self.txid,
            "version": 2,
            "locktime": 0,
            "vin": vin,
            "vout": vout,
            "size": 222,
            "weight": 561,
            "fee": 0 if self.from_address is None else 1_000,
            "status": status,
        }

    def touches(self, address: str) -> bool:
        return self.from_address == address or any(a == address for a, _ in self.outputs)


@dataclass
class Block:
    hash: str
    height: int
    txids: list[str]
    time: int


@dataclass(frozen=True)
class Fault:
    status: int = 500
    body: bytes = b"Internal Server Error"
    content_type: str = "text/plain"
    hang: bool = False


@dataclass
class FakeChain:
    blocks: list[Block] = field(default_factory=list)
    mempool: list[str] = field(default_factory=list)  # oldest first
    txs: dict[str, FakeTx] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.mine()  # genesis, height 0

    @property
    def tip(self) -> Block:
        return self.blocks[-1]

    def pay(self, *outputs: tuple[str | None, int], from_address: str | None = FUNDING_ADDRESS) -> str:
        """Broadcast a transaction with these outputs (address, sats); returns its txid."""
        txid = _hash("tx", next(self._ids))
        self.txs[txid] = FakeTx(txid, list(outputs), from_address)
        self.mempool.append(txid)
        return txid

    def mine(self, count: int = 1, *, exclude: Iterable[str] = ()) -> list[str]:
        """Mine `count` blocks; the first takes the whole mempool except `exclude`. Returns hashes."""
        left_out = set(exclude)
        hashes = []
        for _ in range(count):
            included = [t for t in self.mempool if t not in left_out]
            self.mempool = [t for t in self.mempool if t in left_out]
            height = len(self.blocks)
            block = Block(_hash("block", next(self._ids)), height, included, GENESIS_TIME + 600 * height)
            self.blocks.append(block)
            hashes.append(block.hash)
        return hashes

    def reorg(
        self,
        depth: int,
        *,
        new_blocks: int = 0,
        double_spent: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> list[str]:
        """Orphan the last `depth` blocks: their transactions go back to the mempool, except
        `double_spent` ones, which vanish; then mine `new_blocks` (leaving `exclude` unmined)."""
        assert 0 < depth < len(self.blocks)
        orphaned, self.blocks = self.blocks[-depth:], self.blocks[:-depth]
        gone = set(double_spent)
        returned = [t for b in orphaned for t in b.txids if t not in gone]
        self.mempool = returned + [t for t in self.mempool if t not in gone]
        return self.mine(new_blocks, exclude=exclude) if new_blocks else []

    def drop(self, txid: str) -> None:
        """Evict a transaction from the mempool (expired, replaced by fee, conflicted)."""
        self.mempool.remove(txid)

    # --- what Esplora would answer ----------------------------------------------------------

    def block_of(self, txid: str) -> Block | None:
        return next((b for b in self.blocks if txid in b.txids), None)

    def status(self, txid: str) -> dict[str, Any] | None:
        block = self.block_of(txid)
        if block is not None:
            return {
                "confirmed": True,
                "block_height": block.height,
                "block_hash": block.hash,
                "block_time": block.time,
            }
        return {"confirmed": False} if txid in self.mempool else None

    def tx_json(self, txid: str) -> dict[str, Any] | None:
        status = self.status(txid)
        return None if status is None else self.txs[txid].to_json(status)

    def address_history(self, address: str) -> tuple[list[str], list[str]]:
        """(mempool txids, confirmed txids), each newest first."""
        mempool = [t for t in reversed(self.mempool) if self.txs[t].touches(address)]
        confirmed = [
            t for b in reversed(self.blocks) for t in reversed(b.txids) if self.txs[t].touches(address)
        ]
        return mempool, confirmed


class FakeEsplora:
    """The HTTP face of a FakeChain on 127.0.0.1 (port 0). `fail(prefix)` makes every request
    whose path starts with `prefix` answer with a fault until `heal()`."""

    def __init__(self) -> None:
        self.chain = FakeChain()
        self.faults: dict[str, Fault] = {}
        self.hits: Counter[str] = Counter()
        self.base_url = ""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def fail(self, prefix: str, fault: Fault | None = None) -> None:
        self.faults[prefix] = fault or Fault()

    def malformed(self, prefix: str, body: bytes = b'{"txid": ') -> None:
        self.faults[prefix] = Fault(200, body, "application/json")

    def heal(self) -> None:
        self.faults.clear()

    # --- HTTP -----------------------------------------------------------------------------------

    def answer(self, path: str) -> tuple[int, str, bytes]:
        for prefix, fault in self.faults.items():
            if path.startswith(prefix):
                return fault.status, fault.content_type, fault.body
        chain = self.chain
        parts = path.strip("/").split("/")
        match parts:
            case ["blocks", "tip", "height"]:
                return _text(str(chain.tip.height))
            case ["blocks", "tip", "hash"]:
                return _text(chain.tip.hash)
            case ["block-height", height] if height.isdigit():
                if int(height) >= len(chain.blocks):
                    return 404, "text/plain", b"Block not found"
                return _text(chain.blocks[int(height)].hash)
            case ["tx", txid]:
                return _json_or_404(chain.tx_json(txid), b"Transaction not found")
            case ["tx", txid, "status"]:
                return _json_or_404(chain.status(txid), b"Transaction not found")
            case ["address", address, "txs"]:
                mempool, confirmed = chain.address_history(address)
                return _tx_list(chain, mempool[:50] + confirmed[:25])
            case ["address", address, "txs", "chain", *last]:
                _, confirmed = chain.address_history(address)
                start = 0
                if last:
                    if last[0] not in confirmed:
                        return _tx_list(chain, [])
                    start = confirmed.index(last[0]) + 1
                return _tx_list(chain, confirmed[start : start + 25])
        return 404, "text/plain", b"Not Found"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            if not request_line:
                return
            path = request_line.decode().split(" ")[1]
            self.hits[path] += 1
            fault = next((f for p, f in self.faults.items() if path.startswith(p)), None)
            if fault is not None and fault.hang:
                await asyncio.Event().wait()  # never answers; cancelled by stop()
            status, content_type, body = self.answer(path)
            head = (
                f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        finally:
            self._handlers.discard(task)
            writer.close()
            await writer.wait_closed()


def _text(value: str) -> tuple[int, str, bytes]:
    return 200, "text/plain", value.encode()


def _json_or_404(payload: object | None, missing: bytes) -> tuple[int, str, bytes]:
    if payload is None:
        return 404, "text/plain", missing
    return 200, "application/json", json.dumps(payload).encode()


def _tx_list(chain: FakeChain, txids: list[str]) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps([chain.tx_json(t) for t in txids]).encode()
