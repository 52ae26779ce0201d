"""What `make up` puts in front of a newcomer: the demo merchant and its API key (kept in
.dev/), a first invoice to pay, and the banner that says where everything is."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

from libs.common.config import SERVICES, with_database
from tools.devchain.stack import StackChain
from tools.devstack.stack import Stack, request

log = logging.getLogger("checkout.devstack")

# The BIP39 test mnemonic "abandon abandon ... about": a public, watch-only demo account, so the
# demo merchant can take invoices. Never send real funds to it.
DEMO_ETHEREUM_XPUB = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt"


def seed_demo(stack: Stack, state_file: Path) -> dict[str, str]:
    """The demo merchant and its API key, created once and remembered in .dev/."""
    if state_file.exists():
        demo: dict[str, str] = json.loads(state_file.read_text())
        status, _ = request(stack.base_url, "GET", "/v1/api-keys", demo["api_key"])
        if status == 200:
            return demo
    email = f"demo+{secrets.token_hex(3)}@checkout.local"
    status, merchant = request(
        stack.base_url,
        "POST",
        "/v1/merchants",
        stack.admin_token,
        {"business_name": "Demo Shop", "contact_email": email, "wallets": {"ethereum": DEMO_ETHEREUM_XPUB}},
    )
    if status != 201:
        raise RuntimeError(f"could not create the demo merchant: {status} {merchant}")
    status, key = request(
        stack.base_url,
        "POST",
        f"/v1/merchants/{merchant['id']}/api-keys",
        stack.admin_token,
        {"name": "demo"},
    )
    if status != 201:
        raise RuntimeError(f"could not create the demo API key: {status} {key}")
    demo = {"merchant_id": merchant["id"], "api_key": key["key"], "contact_email": email}
    state_file.write_text(json.dumps(demo, indent=2))
    state_file.chmod(0o600)
    return demo


DEMO_ORDER = {
    "title": "Coffee beans",
    "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
    "customer_email": "buyer@example.com",
}


def demo_invoice(stack: Stack, demo: dict[str, str]) -> dict[str, Any] | None:
    """A fresh invoice of the demo merchant, so there is a payer's page to open at once."""
    status, invoice = request(stack.base_url, "POST", "/v1/invoices", demo["api_key"], DEMO_ORDER)
    if status != 201:
        log.warning("could not create the demo invoice: %s %s", status, invoice)
        return None
    return dict(invoice)


def banner(
    stack: Stack,
    demo: dict[str, str],
    generated_token: str,
    seconds: float,
    chain: StackChain | None = None,
    invoice: dict[str, Any] | None = None,
) -> str:
    curl = (
        f"curl -s -X POST {stack.base_url}/v1/invoices \\\n"
        f"    -H 'Authorization: Bearer {demo['api_key']}' -H 'Content-Type: application/json' \\\n"
        """    -d '{"title": "Coffee beans", "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}], """
        """"currency": "USD", "crypto_currency": "ETH", "customer_email": "buyer@example.com"}'"""
    )
    lines = [
        "",
        f"Checkout platform is up in {seconds:.1f}s: {stack.base_url}  (Ctrl-C stops everything)",
        f"  demo merchant:  {demo['merchant_id']}",
        f"  demo API key:   {demo['api_key']}",
        f"  API docs:       {stack.base_url}/docs  (Authorize with the key above, then try any call)",
    ]
    if generated_token:
        lines.append(
            f"  operator token: {generated_token}  (generated; set CHECKOUT_ADMIN_TOKEN to choose one)"
        )
    if chain is not None:
        lines.append(
            f"  EVM dev chain:  {chain.info.rpc_url} (chain id {chain.info.chain_id}, a block every "
            f"{chain.chain.block_time:.0f}s), test USDC at {chain.info.token}"
        )
    if stack.servers.replica_urls:
        lines.append(
            f"  read replicas:  {len(stack.servers.replica_urls)} streaming standby(s) of every shard; "
            f"lag in GET {stack.base_url}/v1/admin/shards (operator token)"
        )
    lines.append(f"  dashboard:      {stack.base_url}/dashboard  (sign in with the demo API key)")
    lines.append(
        f"  metrics:        {stack.base_url}/metrics (gateway), "
        + ", ".join(f"{s} :{stack.metrics_ports[s]}/metrics" for s in SERVICES)
    )
    lines.append(f"                  all of them: {stack.base_url}/v1/admin/metrics (operator token)")
    new_shard = with_database(stack.servers.database_url, f"checkout_shard_{stack.shard_count}")
    lines.append(f"  add a shard:    checkout-admin shards add --dsn '{new_shard}'  (README: Adding a shard)")
    if invoice is not None:
        lines += [
            "",
            "A demo invoice is waiting; open the payer's page in a browser:",
            "",
            f"    {invoice['checkout_url']}",
        ]
        if chain is not None:
            lines += [
                "",
                "then pay it from a funded dev account and watch the page go to confirmed:",
                "",
                f"    make pay INVOICE={invoice['id']}",
            ]
    lines += ["", "Create another invoice (its checkout_url is its payer's page):", "", curl, ""]
    if stack.servers.replica_urls:
        lines += [
            "Its response carries Checkout-Consistency-Token (curl -i shows it). Send it back, and the",
            "read sees your invoice at once, from the replica once it has replayed that far:",
            "",
            f"curl -s {stack.base_url}/v1/invoices/<id> -H 'Authorization: Bearer {demo['api_key']}' \\\n"
            "    -H 'Checkout-Consistency-Token: <token>'",
            "",
        ]
    if chain is not None:
        lines += [
            "Pay it from a funded dev account, and watch it go to confirmed:",
            "",
            f"make pay INVOICE=<id>      # then: curl -s {stack.base_url}/v1/checkout/<id>",
            "",
        ]
    else:
        lines += ["(no EVM dev chain without Node.js: invoices stay pending)", ""]
    return "\n".join(lines)
