"""Pay an invoice on the local dev chain from a funded dev account, then watch it confirm.

    python -m tools.pay <invoice_id> [--amount 0.01] [--account 1] [--no-wait]
    make pay INVOICE=<invoice_id> [AMOUNT=0.01]
    make pay INVOICE=<invoice_id> REFUND=<refund_id>   # as the merchant: pay a claimed refund

Reads the public checkout view (`GET /v1/checkout/{id}`), sends what is still owed (or
--amount) of the invoice's crypto currency to its payment address — ETH as a value transfer, the
test USDC as an ERC-20 `transfer` — and prints each status change until `confirmed`. With
--refund it plays the merchant instead: sends a claimed refund's amount to the address the payer
claimed (both in the same public view) and waits for the watcher to mark it `completed`. The
chain's URL and token address come from .dev/devchain.json, written by `make up`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs

import httpx

from libs.common.evm_rpc import EvmRpc, RpcError, RpcUnavailable
from tools.devchain import (
    ChainInfo,
    ReceiptTimeout,
    TransactionFailed,
    dev_accounts,
    send_eth,
    send_token,
    token_balance,
    wait_receipt,
)

ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = ROOT / ".dev" / "devchain.json"
# Where `make up` put the gateway: CHECKOUT_HTTP_PORT moves it there too.
DEFAULT_GATEWAY = f"http://127.0.0.1:{os.environ.get('CHECKOUT_HTTP_PORT') or 8080}"
DEFAULT_RPC = "http://127.0.0.1:8545"
DECIMALS = {"ETH": 18, "USDC": 6}
FINAL = {"confirmed", "invalid", "cancelled"}


class PayError(Exception):
    """Why the payment cannot be made; printed as is."""


@dataclass(frozen=True)
class Payment:
    currency: str
    to: str
    units: int  # wei or token units
    amount: Decimal  # the same, in the currency's unit
    token: str | None = None  # the ERC-20 contract; None for ETH
    chain_id: int | None = None  # from the payment URI, when it names one


@dataclass(frozen=True)
class Eip681:
    target: str  # the payee, or the token contract for a `transfer`
    chain_id: int | None
    function: str | None
    params: dict[str, str]


def parse_eip681(uri: str) -> Eip681:
    """`ethereum:<target>[@<chain>][/<function>][?<params>]` (no ENS names)."""
    if not uri.startswith("ethereum:"):
        raise PayError(f"not an EIP-681 URI: {uri!r}")
    head, _, query = uri.removeprefix("ethereum:").removeprefix("pay-").partition("?")
    target_chain, _, function = head.partition("/")
    target, _, chain = target_chain.partition("@")
    if chain and not chain.isdigit():
        raise PayError(f"the EIP-681 chain id is not a number in {uri!r}")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return Eip681(target, int(chain) if chain else None, function or None, params)


def to_units(amount: Decimal, decimals: int, currency: str) -> int:
    units = amount.scaleb(decimals)
    if units != units.to_integral_value():
        raise PayError(f"{amount} {currency} has more than {decimals} decimals")
    return int(units)


def plan(view: dict[str, Any], amount: Decimal | None, chain: ChainInfo | None) -> Payment:
    """What to send for a checkout view: the amount still owed, or `amount`."""
    currency = str(view.get("crypto_currency", ""))
    if currency not in DECIMALS:
        raise PayError(f"{currency or 'this currency'} cannot be paid on the dev chain (only ETH and USDC)")
    decimals = DECIMALS[currency]
    if amount is None:
        try:
            amount = Decimal(str(view["crypto_amount"])) - Decimal(str(view.get("amount_paid") or "0"))
        except (KeyError, InvalidOperation):
            raise PayError(f"the checkout view has no usable crypto_amount: {view!r}") from None
        if amount <= 0:
            raise PayError(f"nothing left to pay: the invoice is {view.get('status')} with {amount:f} owed")
    if amount <= 0:
        raise PayError("the amount must be positive")
    units = to_units(amount, decimals, currency)
    to = str(view.get("payment_address", ""))
    uri_text = str(view.get("payment_uri") or "")
    uri = parse_eip681(uri_text) if uri_text else None
    if currency == "ETH":
        if uri is not None and uri.target.lower() != to.lower():
            raise PayError(f"the payment URI pays {uri.target}, not the payment address {to}")
        return Payment(currency, to, units, amount, chain_id=uri.chain_id if uri else None)
    token = None
    if uri is not None and uri.function == "transfer":
        token = uri.target
        if uri.params.get("address", "").lower() != to.lower():
            raise PayError(f"the payment URI pays {uri.params.get('address')}, not {to}")
    if chain is not None:
        if token is None:
            token = chain.token
        elif token.lower() != chain.token.lower():
            print(
                f"note: the invoice names token {token}, the dev chain's is {chain.token}; paying the invoice's",
                file=sys.stderr,
            )
    if token is None:
        raise PayError("no token address: the payment URI has none and there is no .dev/devchain.json")
    return Payment(currency, to, units, amount, token=token, chain_id=uri.chain_id if uri else None)


def plan_refund(view: dict[str, Any], refund_id: str, chain: ChainInfo | None) -> Payment:
    """What the merchant sends for a claimed refund: its crypto amount, to the claimed address."""
    refund = next((r for r in view.get("refunds") or [] if r.get("id") == refund_id), None)
    if refund is None:
        raise PayError(f"the invoice has no refund {refund_id}")
    if refund.get("status") != "claimed":
        raise PayError(f"the refund is {refund.get('status')}: only a claimed one has an address to pay")
    currency = str(refund.get("crypto_currency", ""))
    if currency not in DECIMALS:
        raise PayError(f"{currency or 'this currency'} cannot be paid on the dev chain (only ETH and USDC)")
    amount = Decimal(str(refund["crypto_amount"]))
    units = to_units(amount, DECIMALS[currency], currency)
    token = None
    if currency != "ETH":
        if chain is None:
            raise PayError("no token address: there is no .dev/devchain.json")
        token = chain.token
    return Payment(currency, str(refund["address"]), units, amount, token=token)


async def watch_refund(
    http: httpx.AsyncClient, gateway: str, invoice_id: str, refund_id: str, *, timeout: float, out: TextIO
) -> str:
    """Poll the checkout view until the refund is completed (or cancelled), or `timeout`."""
    started = time.monotonic()
    while True:
        view = await fetch_view(http, gateway, invoice_id)
        status = next(
            (str(r.get("status")) for r in view.get("refunds") or [] if r.get("id") == refund_id), ""
        )
        if status in ("completed", "cancelled") or time.monotonic() - started > timeout:
            print(f"  {time.monotonic() - started:5.1f}s  refund {status}", file=out, flush=True)
            return status
        await asyncio.sleep(0.5)


async def fetch_view(http: httpx.AsyncClient, gateway: str, invoice_id: str) -> dict[str, Any]:
    try:
        response = await http.get(f"{gateway.rstrip('/')}/v1/checkout/{invoice_id}")
    except httpx.HTTPError as error:
        raise PayError(f"cannot reach the gateway at {gateway}: {error}") from None
    if response.status_code != 200:
        raise PayError(f"GET /v1/checkout/{invoice_id}: HTTP {response.status_code} {response.text[:300]}")
    view: dict[str, Any] = response.json()
    return view


async def send(rpc: EvmRpc, payment: Payment, from_key: str, sender: str) -> str:
    chain_id = await rpc.chain_id()
    if payment.chain_id is not None and payment.chain_id != chain_id:
        raise PayError(
            f"the invoice is for chain {payment.chain_id}, the node at {rpc.url} is chain {chain_id}"
        )
    if payment.token is None:
        balance = await rpc.balance(sender)
        if balance < payment.units:
            raise PayError(f"{sender} has {Decimal(balance).scaleb(-18)} ETH, less than {payment.amount}")
        return await send_eth(rpc, from_key, payment.to, payment.units)
    held = await token_balance(rpc, payment.token, sender)
    if held < payment.units:
        raise PayError(
            f"{sender} holds {Decimal(held).scaleb(-DECIMALS[payment.currency])} {payment.currency}, "
            f"less than {payment.amount}"
        )
    return await send_token(rpc, from_key, payment.token, payment.to, payment.units)


async def watch(
    http: httpx.AsyncClient,
    gateway: str,
    invoice_id: str,
    *,
    timeout: float,
    out: TextIO,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll the checkout view, printing each change of status, until a final one or `timeout`."""
    started = clock()
    last: tuple[str, str] | None = None
    while True:
        view = await fetch_view(http, gateway, invoice_id)
        state = (str(view.get("status")), str(view.get("amount_paid")))
        if state != last:
            print(
                f"  {clock() - started:5.1f}s  {state[0]:<10} paid {state[1]} of {view.get('crypto_amount')} "
                f"{view.get('crypto_currency')}",
                file=out,
                flush=True,
            )
            last = state
        if state[0] in FINAL:
            return state[0]
        if clock() - started > timeout:
            return state[0]
        await asyncio.sleep(interval)


async def pay(
    invoice_id: str,
    *,
    gateway: str = DEFAULT_GATEWAY,
    rpc_url: str | None = None,
    amount: Decimal | None = None,
    account: int = 1,
    wait: bool = True,
    timeout: float = 120.0,
    chain: ChainInfo | None = None,
    out: TextIO = sys.stdout,
    refund: str | None = None,
) -> str:
    """Pay the invoice (or, with `refund`, that claimed refund of it); the transaction hash, or
    the final status when waiting.

    `chain` is what `make up` wrote to .dev/devchain.json: the node's URL and the token address.
    """
    rpc_url = rpc_url or (chain.rpc_url if chain else DEFAULT_RPC)
    accounts = dev_accounts()
    if not 0 <= account < len(accounts):
        raise PayError(f"--account must be between 0 and {len(accounts) - 1}")
    payer = accounts[account]
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http, EvmRpc(rpc_url) as rpc:
        view = await fetch_view(http, gateway, invoice_id)
        payment = plan_refund(view, refund, chain) if refund else plan(view, amount, chain)
        what = f"{payment.amount} {payment.currency}" + (f" (token {payment.token})" if payment.token else "")
        print(f"paying {what} to {payment.to} from dev account {account} ({payer.address})", file=out)
        try:
            tx_hash = await send(rpc, payment, payer.private_key, payer.address)
        except RpcUnavailable as error:
            raise PayError(
                f"the dev chain at {rpc_url} is not answering ({error}); is `make up` running?"
            ) from None
        except RpcError as error:
            raise PayError(f"the node refused the transaction: {error}") from None
        print(f"sent {tx_hash}", file=out, flush=True)
        if not wait:
            return tx_hash
        try:
            receipt = await wait_receipt(rpc, tx_hash, timeout)
        except (TransactionFailed, ReceiptTimeout) as error:
            raise PayError(str(error)) from None
        print(
            f"mined in block {int(receipt['blockNumber'], 16)}; watching the {'refund' if refund else 'invoice'} ...",
            file=out,
            flush=True,
        )
        if refund:
            status = await watch_refund(http, gateway, invoice_id, refund, timeout=timeout, out=out)
            if status != "completed":
                raise PayError(f"the refund is {status or 'gone'}, not completed, after {timeout:.0f}s")
            return status
        status = await watch(http, gateway, invoice_id, timeout=timeout, out=out)
        if status != "confirmed":
            raise PayError(f"the invoice is {status}, not confirmed, after {timeout:.0f}s")
        return status


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal amount: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"the amount must be a positive number, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pay", description=__doc__.split("\n\n")[0])
    parser.add_argument("invoice_id")
    parser.add_argument(
        "--amount", type=_amount, help="in the invoice's crypto currency (default: what is owed)"
    )
    parser.add_argument("--account", type=int, default=1, help="dev account index, 0-9 (default 1)")
    parser.add_argument(
        "--refund", default=None, help="pay this claimed refund of the invoice, as the merchant"
    )
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY)
    parser.add_argument(
        "--rpc", default=None, help=f"node URL (default: .dev/devchain.json, else {DEFAULT_RPC})"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for confirmed")
    parser.add_argument("--no-wait", action="store_true", help="print the transaction hash and exit")
    args = parser.parse_args(argv)
    chain = ChainInfo.load(STATE_FILE) if STATE_FILE.exists() else None
    try:
        asyncio.run(
            pay(
                args.invoice_id,
                gateway=args.gateway,
                rpc_url=args.rpc,
                amount=args.amount,
                account=args.account,
                wait=not args.no_wait,
                timeout=args.timeout,
                chain=chain,
                refund=args.refund,
            )
        )
    except PayError as error:
        print(f"pay: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
