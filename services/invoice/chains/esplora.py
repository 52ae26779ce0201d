"""An async client for the Esplora REST API (Blockstream's electrs, mempool.space, self-hosted).

Only what the Bitcoin watcher needs: the tip height, the block hash at a height, an address's
transactions and one transaction. Answers are parsed strictly against the documented format
(https://github.com/Blockstream/esplora/blob/master/API.md); anything else - a network error, a
timeout, an HTTP error status, a body that is not exactly that format - is an `EsploraError`, so a
caller never sees KeyError or TypeError from a misbehaving server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx

__all__ = [
    "CONFIRMED_PAGE_SIZE",
    "EsploraClient",
    "EsploraError",
    "EsploraTx",
    "TxOutput",
    "TxStatus",
    "parse_transaction",
]

log = logging.getLogger("checkout.invoice.esplora")

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 10.0
# Esplora's fixed page size for confirmed history (`/address/:a/txs` and `/txs/chain/:last`).
CONFIRMED_PAGE_SIZE = 25
# `/address/:a/txs` returns at most this many mempool transactions (no paging).
MEMPOOL_LIMIT = 50
# An invoice address sees a handful of transactions; this many pages (1,000 txs) bounds the work
# a dusted address can cause. Payments beyond it are checked one by one by the watcher.
DEFAULT_MAX_PAGES = 40
# A page of 25 large transactions is a few MB at most.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

_HASH_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
# Base58 or bech32(m) characters only: the address goes into a URL path.
_ADDRESS_RE = re.compile(r"[A-Za-z0-9]{14,100}", re.ASCII)


class EsploraError(Exception):
    """Esplora could not answer `path` usably; `reason` says why (never the response content)."""

    def __init__(self, path: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"esplora {path}: {reason}")
        self.path = path
        self.reason = reason
        self.status = status  # the HTTP status when the server answered with an error

    def __reduce__(self) -> tuple[type[EsploraError], tuple[str, str, int | None]]:
        return (type(self), (self.path, self.reason, self.status))


class _Malformed(Exception):
    """The answer is not the documented format; the message says where."""


@dataclass(frozen=True)
class TxStatus:
    confirmed: bool
    block_height: int | None  # None while unconfirmed
    block_hash: str | None
    block_time: int | None = None  # the block's timestamp (unix seconds), when Esplora gives it


@dataclass(frozen=True)
class TxOutput:
    index: int  # the vout index
    address: str | None  # None for outputs without an address (OP_RETURN, bare scripts)
    value: int  # sats


@dataclass(frozen=True)
class EsploraTx:
    txid: str
    input_addresses: tuple[str | None, ...]  # each input's prevout address (None: coinbase, no address)
    outputs: tuple[TxOutput, ...]
    status: TxStatus

    @property
    def from_address(self) -> str | None:
        """The first input's address: who paid, as far as a single address can say."""
        return self.input_addresses[0] if self.input_addresses else None


def _field(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _Malformed(f"{where} has no {key}")
    return obj[key]


def _int(value: Any, where: str, minimum: int = 0) -> int:
    # bool is an int subclass; a JSON float (parsed as Decimal by _parse_json) is not an int.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Malformed(f"{where} is not an integer >= {minimum}")
    return value


def _hash(value: Any, where: str) -> str:
    if not isinstance(value, str) or _HASH_RE.fullmatch(value) is None:
        raise _Malformed(f"{where} is not a 64-digit lower-case hex hash")
    return value


def _optional_address(obj: dict[str, Any], where: str) -> str | None:
    address = obj.get("scriptpubkey_address")
    if address is None:
        return None
    if not isinstance(address, str) or _ADDRESS_RE.fullmatch(address) is None:
        raise _Malformed(f"{where}.scriptpubkey_address is not an address")
    return address


def _status(obj: Any, where: str) -> TxStatus:
    confirmed = _field(obj, "confirmed", where)
    if not isinstance(confirmed, bool):
        raise _Malformed(f"{where}.confirmed is not a boolean")
    if not confirmed:
        return TxStatus(False, None, None)
    height = _int(_field(obj, "block_height", where), f"{where}.block_height")
    block_hash = _hash(_field(obj, "block_hash", where), f"{where}.block_hash")
    time = obj.get("block_time")
    return TxStatus(True, height, block_hash, None if time is None else _int(time, f"{where}.block_time"))


def _parse_tx(obj: Any) -> EsploraTx:
    txid = _hash(_field(obj, "txid", "tx"), "tx.txid")
    where = f"tx {txid}"
    vin = _field(obj, "vin", where)
    vout = _field(obj, "vout", where)
    if not isinstance(vin, list) or not isinstance(vout, list):
        raise _Malformed(f"{where}: vin and vout must be lists")
    inputs: list[str | None] = []
    for n, item in enumerate(vin):
        if not isinstance(item, dict):
            raise _Malformed(f"{where}.vin[{n}] is not an object")
        prevout = item.get("prevout")  # null for a coinbase input
        if prevout is None:
            inputs.append(None)
        elif isinstance(prevout, dict):
            inputs.append(_optional_address(prevout, f"{where}.vin[{n}].prevout"))
        else:
            raise _Malformed(f"{where}.vin[{n}].prevout is not an object")
    outputs = []
    for n, item in enumerate(vout):
        out_where = f"{where}.vout[{n}]"
        if not isinstance(item, dict):
            raise _Malformed(f"{out_where} is not an object")
        value = _int(_field(item, "value", out_where), f"{out_where}.value")
        outputs.append(TxOutput(n, _optional_address(item, out_where), value))
    return EsploraTx(txid, tuple(inputs), tuple(outputs), _status(_field(obj, "status", where), where))


def parse_transaction(obj: Any) -> EsploraTx:
    """One transaction in Esplora's transaction format; ValueError when it is not that format."""
    try:
        return _parse_tx(obj)
    except _Malformed as error:
        raise ValueError(str(error)) from None


def _refuse_constant(name: str) -> Any:
    raise _Malformed(f"JSON contains {name}")


def _parse_json(body: bytes) -> Any:
    try:
        # parse_float: an amount must be an integer of sats; a float must not slip in rounded.
        return json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise _Malformed("response is not valid JSON") from None


class EsploraClient:
    """`base_url` is the API root (`https://blockstream.info/api`, `http://127.0.0.1:3002`)."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        """`client` is used as given and left open; without one the client owns an httpx client,
        which `aclose()` (or `async with`) closes. `timeout` (seconds) bounds each request whole."""
        if timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._max_pages = max_pages
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> EsploraClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- the API ------------------------------------------------------------------------------

    async def tip_height(self) -> int:
        path = "/blocks/tip/height"
        text = await self._text(path)
        if not text.isdigit() or len(text) > 12:
            raise EsploraError(path, "tip height is not a non-negative integer")
        return int(text)

    async def block_hash_at(self, height: int) -> str | None:
        """The hash of the best chain's block at `height`; None when the chain is not that tall."""
        if height < 0:
            raise ValueError("height must not be negative")
        path = f"/block-height/{height}"
        try:
            text = await self._text(path)
        except EsploraError as error:
            if error.status == 404:  # "Block not found": above the tip
                return None
            raise
        try:
            return _hash(text, "block hash")
        except _Malformed as error:
            raise EsploraError(path, str(error)) from None

    async def transaction(self, txid: str) -> EsploraTx | None:
        """The transaction as Esplora knows it now; None when it knows no such transaction
        (dropped from the mempool, or reorged away and not re-broadcast)."""
        _check_txid(txid)
        path = f"/tx/{txid}"
        try:
            payload = await self._json(path)
        except EsploraError as error:
            if error.status == 404:
                return None
            raise
        tx = self._convert(path, _parse_tx, payload)
        if tx.txid != txid:
            raise EsploraError(path, "answered with another transaction")
        return tx

    async def tx_status(self, txid: str) -> TxStatus | None:
        """The confirmation status alone; None when Esplora knows no such transaction."""
        _check_txid(txid)
        path = f"/tx/{txid}/status"
        try:
            payload = await self._json(path)
        except EsploraError as error:
            if error.status == 404:
                return None
            raise
        return self._convert(path, lambda obj: _status(obj, "status"), payload)

    async def address_txs(self, address: str) -> list[EsploraTx]:
        """Every transaction touching `address`, mempool first, then confirmed newest first.

        Confirmed history is paged 25 at a time up to `max_pages` pages; past that bound (or past
        the 50 mempool transactions Esplora lists) the list is incomplete and a warning is logged,
        so a caller must not read absence from this list as proof a transaction is gone.
        """
        if _ADDRESS_RE.fullmatch(address) is None:
            raise ValueError(f"not an address: {address!r}")
        path = f"/address/{address}/txs"
        txs = self._tx_list(path, await self._json(path))
        mempool = [tx for tx in txs if not tx.status.confirmed]
        confirmed = [tx for tx in txs if tx.status.confirmed]
        if len(mempool) >= MEMPOOL_LIMIT:
            log.warning(
                "esplora: %s has %d+ mempool transactions; only those are listed", address, MEMPOOL_LIMIT
            )
        seen = {tx.txid for tx in txs}
        page, pages = confirmed, 1
        while len(page) >= CONFIRMED_PAGE_SIZE:
            if pages >= self._max_pages:
                log.warning(
                    "esplora: %s has more than %d confirmed transactions; older ones not listed",
                    address,
                    len(confirmed),
                )
                break
            path = f"/address/{address}/txs/chain/{page[-1].txid}"
            page = self._tx_list(path, await self._json(path))
            pages += 1
            if any(not tx.status.confirmed for tx in page):
                raise EsploraError(path, "confirmed history lists an unconfirmed transaction")
            # A page repeating what we have means the history moved under us (a reorg while
            # paging); what we hold is still right, just incomplete.
            new = [tx for tx in page if tx.txid not in seen]
            if len(new) < len(page):
                log.warning("esplora: %s history changed while paging; stopping", address)
                confirmed.extend(new)
                break
            seen.update(tx.txid for tx in new)
            confirmed.extend(new)
        return mempool + confirmed

    # --- plumbing -------------------------------------------------------------------------------

    def _tx_list(self, path: str, payload: Any) -> list[EsploraTx]:
        if not isinstance(payload, list):
            raise EsploraError(path, "response is not a list of transactions")
        return [self._convert(path, _parse_tx, item) for item in payload]

    @staticmethod
    def _convert(path: str, parse: Callable[[Any], T], payload: Any) -> T:
        try:
            return parse(payload)
        except _Malformed as error:
            raise EsploraError(path, str(error)) from None

    async def _json(self, path: str) -> Any:
        body = await self._get(path)
        try:
            return _parse_json(body)
        except _Malformed as error:
            raise EsploraError(path, str(error)) from None

    async def _text(self, path: str) -> str:
        body = await self._get(path)
        try:
            return body.decode("ascii").strip()
        except UnicodeDecodeError:
            raise EsploraError(path, "response is not ASCII text") from None

    async def _get(self, path: str) -> bytes:
        try:
            # httpx's timeout is per connect/read/write; asyncio.timeout also caps a server that
            # trickles bytes forever.
            async with asyncio.timeout(self._timeout):
                request = self._client.build_request("GET", f"{self.base_url}{path}", timeout=self._timeout)
                response = await self._client.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        raise EsploraError(path, f"HTTP status {response.status_code}", response.status_code)
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_RESPONSE_BYTES:
                            raise EsploraError(path, "response is too large")
                    return bytes(body)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            raise EsploraError(path, f"no answer within {self._timeout:g} s") from None
        except (httpx.HTTPError, OSError) as error:
            raise EsploraError(path, f"request failed ({type(error).__name__})") from None


def _check_txid(txid: str) -> None:
    if _HASH_RE.fullmatch(txid) is None:
        raise ValueError(f"not a txid: {txid!r}")
