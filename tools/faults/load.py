"""The load the fault suite drives through the gateway, as merchants and payers would: merchants on
both shards with their own xpub, key and webhook receiver; invoices in ETH and USDC; payments on
the dev chain (exact, and partial followed by a top-up).

Every request is retried while the platform is unavailable (503/504, connection refused while the
gateway restarts), with an Idempotency-Key on every POST, so a retry never creates twice. Every
status seen is counted: the suite's verdict on "clients saw 503/504, never 500" reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins

from libs.common.evm_rpc import EvmRpc, RpcError
from libs.common.shardmap import ShardMap, slot_for_email
from tools.devchain import tx
from tools.devchain.accounts import DevAccount
from tools.faults.receivers import Receiver

log = logging.getLogger("checkout.faults")

# The merchants' watch-only keys come from another public test mnemonic than the payers' funded
# accounts, one BIP44 account per merchant: no two merchants ever share a payment address.
MERCHANT_MNEMONIC = (
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
)
RETRYABLE = frozenset({409, 429, 502, 503, 504})
REQUEST_DEADLINE_SECONDS = 180.0


def merchant_xpub(account: int) -> str:
    seed = Bip39SeedGenerator(MERCHANT_MNEMONIC).Generate()
    return str(
        Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(account).PublicKey().ToExtended()
    )


@dataclass
class Statuses:
    counts: Counter[int] = field(default_factory=Counter)
    unreachable: int = 0  # no answer at all: the gateway was down or restarting
    internal: list[str] = field(default_factory=list)  # the 500s, with their request ids

    @property
    def server_errors(self) -> dict[int, int]:
        return {status: n for status, n in sorted(self.counts.items()) if status >= 500}


class Client:
    def __init__(self, base_url: str, statuses: Statuses) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.statuses = statuses

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """The first answer that is not an outage; every answer is counted on the way."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        deadline = time.monotonic() + REQUEST_DEADLINE_SECONDS
        pause = 0.1
        while True:
            try:
                response = await self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError:
                self.statuses.unreachable += 1
            else:
                self.statuses.counts[response.status_code] += 1
                if response.status_code == 500:
                    self.statuses.internal.append(
                        f"{method} {path} -> 500 request_id={response.headers.get('x-request-id')}"
                    )
                if response.status_code not in RETRYABLE:
                    return response
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path} did not succeed within {REQUEST_DEADLINE_SECONDS:.0f}s")
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)


@dataclass
class Merchant:
    id: str
    shard: int
    key: str
    receiver: Receiver
    endpoint_id: str = ""


@dataclass
class Invoice:
    id: str
    merchant_id: str
    crypto_currency: str
    crypto_amount: str
    address: str


def emails_on_both_shards(count: int, shard_count: int, tag: str) -> list[str]:
    """`count` contact emails spread evenly over the shards (placement is by the email's slot)."""
    shard_map = ShardMap.even(shard_count)
    wanted = {shard: count // shard_count + (shard < count % shard_count) for shard in range(shard_count)}
    emails: list[str] = []
    n = 0
    while any(wanted.values()):
        email = f"faults-{tag}-{n}@shop.test"
        shard = shard_map.shard_for_slot(slot_for_email(email))
        if wanted[shard]:
            wanted[shard] -= 1
            emails.append(email)
        n += 1
    return emails


async def onboard(client: Client, admin_token: str, count: int, shard_count: int) -> list[Merchant]:
    tag = uuid.uuid4().hex[:6]
    merchants: list[Merchant] = []
    for n, email in enumerate(emails_on_both_shards(count, shard_count, tag)):
        created = await client.call(
            "POST",
            "/v1/merchants",
            token=admin_token,
            idempotency_key=f"merchant-{tag}-{n}",
            body={
                "business_name": f"Faults {n}",
                "contact_email": email,
                "wallets": {"ethereum": merchant_xpub(n)},
            },
        )
        _expect(created, 201)
        merchant_id = created.json()["id"]
        issued = await client.call(
            "POST", f"/v1/merchants/{merchant_id}/api-keys", token=admin_token, body={"name": "faults"}
        )
        _expect(issued, 201)
        receiver = Receiver()
        await receiver.start()
        merchant = Merchant(merchant_id, created.json()["shard"], issued.json()["key"], receiver)
        endpoint = await client.call(
            "POST",
            "/v1/webhook-endpoints",
            token=merchant.key,
            idempotency_key=f"endpoint-{merchant_id}",
            body={"url": receiver.url, "events": ["*"], "timeout_seconds": 5, "max_retries": 20},
        )
        _expect(endpoint, 201)
        merchant.endpoint_id = endpoint.json()["id"]
        merchants.append(merchant)
    return merchants


def invoice_body(n: int, crypto: str, rng: random.Random) -> dict[str, Any]:
    cents = rng.randint(100, 4000)
    return {
        "title": f"Order {n}",
        "items": [{"name": "Item", "quantity": "1", "unit_price": f"{cents // 100}.{cents % 100:02d}"}],
        "currency": "USD",
        "crypto_currency": crypto,
        "customer_email": f"payer-{n % 50}@example.com",
        "expires_in_seconds": 3600,  # long: payments during the faults must never be late
    }


async def create_invoices(
    client: Client,
    merchants: list[Merchant],
    count: int,
    rng: random.Random,
    *,
    first: int = 0,
    concurrency: int = 8,
) -> list[Invoice]:
    """Invoices number `first` to `first + count - 1`, dealt round the merchants."""
    created: list[Invoice] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(first, first + count):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            merchant = merchants[n % len(merchants)]
            crypto = "ETH" if n % 2 == 0 else "USDC"
            response = await client.call(
                "POST",
                "/v1/invoices",
                token=merchant.key,
                idempotency_key=f"invoice-{merchant.id}-{n}",
                body=invoice_body(n, crypto, rng),
            )
            _expect(response, 201)
            body = response.json()
            created.append(
                Invoice(body["id"], merchant.id, crypto, body["crypto_amount"], body["payment_address"])
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return created


DECIMALS = {"ETH": 18, "USDC": 6}


def base_units(amount: str, crypto: str) -> int:
    return int(Decimal(amount).scaleb(DECIMALS[crypto]))


@dataclass
class Payments:
    sent: int = 0
    exact: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # paid in two parts


class Payer:
    """Sends payments from the funded dev accounts, counting each account's nonces itself, and
    sees every one of them mined.

    ganache 7 strands some transactions that arrive while it mines a block (with a block time, as
    here): it files them as "queued" behind a nonce gap that is not there, and the account's later
    ones queue behind them for ever. Sending such a transaction again, byte for byte, gets it
    mined; the same bytes can be mined once only, so this never pays twice. So each signed
    transaction is kept and sent again until it is in a block. Its own nonce count races with
    its miner too, hence ours.
    """

    def __init__(self, rpc: EvmRpc, token: str, accounts: tuple[DevAccount, ...]) -> None:
        self.rpc = rpc
        self.token = token
        self.accounts = accounts[1:]  # account 0 deployed the token
        self._next = 0
        self._nonces: dict[str, int] = {}
        self.sent: dict[str, bytes] = {}  # hash -> the signed transaction
        self.resent = 0

    async def pay(self, invoice: Invoice, units: int) -> None:
        account = self.accounts[self._next % len(self.accounts)]
        self._next += 1
        if account.address not in self._nonces:
            self._nonces[account.address] = await self.rpc.nonce(account.address)
        nonce = self._nonces[account.address]
        if invoice.crypto_currency == "ETH":
            raw = await tx.signed_transaction(
                self.rpc,
                account.private_key,
                nonce=nonce,
                to=invoice.address,
                value=units,
                gas=tx.ETH_TRANSFER_GAS,
            )
        else:
            raw = await tx.signed_transaction(
                self.rpc,
                account.private_key,
                nonce=nonce,
                to=self.token,
                data=tx.transfer_calldata(invoice.address, units),
                gas=tx.TOKEN_TRANSFER_GAS,
            )
        self._nonces[account.address] = nonce + 1
        self.sent[await self.rpc.send_raw_transaction(raw)] = raw

    async def mined(self, timeout: float = 120.0) -> None:
        """Every payment sent is in a block (and did not revert)."""
        deadline = time.monotonic() + timeout
        waiting = dict(self.sent)
        while waiting:
            for tx_hash, raw in list(waiting.items()):
                receipt = await self.rpc.receipt(tx_hash)
                if receipt is not None and receipt.get("blockNumber") is not None:
                    if int(receipt["status"], 16) != 1:
                        raise tx.TransactionFailed(f"payment {tx_hash} reverted")
                    del waiting[tx_hash]
                else:
                    self.resent += 1
                    with contextlib.suppress(RpcError):  # "already known" and the like: fine
                        await self.rpc.send_raw_transaction(raw)
            if waiting and time.monotonic() > deadline:
                raise tx.ReceiptTimeout(f"{len(waiting)} payments not mined within {timeout:.0f}s")
            if waiting:
                await asyncio.sleep(2)  # a block


async def pay_invoices(
    payer: Payer, invoices: list[Invoice], exact: int, partial: int, rng: random.Random
) -> Payments:
    """`exact` invoices paid in one transaction, `partial` in a part and, later, the rest."""
    chosen = rng.sample(invoices, exact + partial)
    done = Payments()
    for invoice in chosen[:exact]:
        await payer.pay(invoice, base_units(invoice.crypto_amount, invoice.crypto_currency))
        done.sent += 1
        done.exact.append(invoice.id)
    halves = []
    for invoice in chosen[exact:]:
        total = base_units(invoice.crypto_amount, invoice.crypto_currency)
        first = total * rng.randint(20, 70) // 100
        await payer.pay(invoice, first)
        done.sent += 1
        halves.append((invoice, total - first))
    await asyncio.sleep(3)  # a block or two: the first parts are seen as partial payments first
    for invoice, rest in halves:
        await payer.pay(invoice, rest)
        done.sent += 1
        done.partial.append(invoice.id)
    await payer.mined()
    return done


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:500]}"
        )
