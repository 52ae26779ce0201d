"""`checkout-admin`, the installed console script, against the real stack, as an operator runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from checkout_client import Client

from tests.common.support import poll
from tools.devstack import DEMO_ETHEREUM_XPUB, Stack

ADMIN = shutil.which("checkout-admin", path=str(Path(sys.executable).parent))


def admin(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = stack.env() | {"CHECKOUT_GATEWAY_URL": stack.base_url, "COLUMNS": "200"}
    assert ADMIN, "checkout-admin is not installed beside this interpreter"
    return subprocess.run([ADMIN, *args], capture_output=True, text=True, env=env, timeout=120)


def test_an_operator_signs_a_merchant_up_and_issues_a_key_that_works(stack: Stack) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@shop.test"
    made = admin(
        stack,
        "merchants",
        "create",
        "--name",
        "CLI shop",
        "--email",
        email,
        "--ethereum-xpub",
        DEMO_ETHEREUM_XPUB,
    )
    assert made.returncode == 0, made.stderr
    merchant_id = next(
        line.split('"')[3] for line in made.stdout.splitlines() if line.strip().startswith('"id"')
    )
    issued = admin(stack, "keys", "create", merchant_id, "--name", "from the cli")
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()  # the key alone on stdout, for a pipe
    with Client(stack.base_url, key) as merchant:
        assert merchant.get_merchant(merchant_id)["contact_email"] == email
    listed = admin(stack, "merchants", "list", "--limit", "200")
    assert email in listed.stdout
    shards = admin(stack, "shards", "--json")
    assert shards.returncode == 0 and '"healthy": true' in shards.stdout


def test_bad_input_and_a_wrong_token_exit_non_zero_and_say_why(stack: Stack) -> None:
    bad = admin(stack, "merchants", "create", "--name", "x", "--email", "not-an-email")
    assert bad.returncode == 1 and "contact_email" in bad.stderr
    wrong = admin(stack, "shards", "--token", "not-the-token")
    assert wrong.returncode == 1 and "unauthenticated" in wrong.stderr
    unknown = admin(stack, "projections", "rebuild", "customer", "nope")
    assert unknown.returncode == 2 and "payment-history" in unknown.stderr


async def test_a_projection_rebuilt_with_its_progress_bar_holds_what_it_held(stack: Stack) -> None:
    with Client(stack.base_url, stack.admin_token) as operator:
        merchant = operator.create_merchant(
            business_name="Rebuilt", contact_email=f"rb-{uuid.uuid4().hex[:8]}@shop.test",
            wallets={"ethereum": DEMO_ETHEREUM_XPUB},
        )  # fmt: skip
        key = operator.create_api_key(merchant["id"], name="k")["key"]
    assert key
    emails = {f"payer-{n}@buyer.test" for n in range(3)}
    with Client(stack.base_url, key) as client:
        for email in sorted(emails):
            client.create_invoice(
                title="t", items=[{"name": "a", "quantity": "1", "unit_price": "5"}], currency="USD",
                crypto_currency="ETH", customer_email=email,
            )  # fmt: skip

        def customers() -> set[str]:
            return {c["email"] for c in client.iter_customers()}

        await poll(lambda: customers() == emails, what="the customers projected")
        shard = str(merchant["shard"])
        rebuilt = admin(stack, "projections", "rebuild", "customer", "customers", "--shard", shard)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert f"shard {shard}:" in rebuilt.stdout and "applied, 0 skipped" in rebuilt.stdout
        assert "100%" in rebuilt.stderr or "ETA" in rebuilt.stderr  # rich's bar, on stderr
        assert customers() == emails
