"""The local EVM dev chain (tools/devchain) and `tools.pay`, against a real ganache node."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account

from libs.common.networks import parse_networks
from services.invoice.payment_uris import eip681_erc20_uri, eip681_uri
from tests.common.support import poll
from tests.devchain.fake_gateway import View, checkout_view, fake_gateway
from tools import pay
from tools.devchain import (
    CHAIN_ID,
    FUNDING_UNITS,
    TRANSFER_TOPIC,
    ChainInfo,
    DevChain,
    NodeMissing,
    check_accounts,
    deploy_token,
    dev_accounts,
    ensure_installed,
    port_is_free,
)
from tools.devchain.testing import EvmChain
from tools.devservers.processes import pid_alive

ROOT = Path(__file__).resolve().parents[2]


def fresh_address() -> str:
    """An address nobody has used on the session's chain: its balances start at zero."""
    return str(Account.create().address)


def topic_of(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


async def test_the_chain_answers_with_chain_id_1337(evm_chain: EvmChain) -> None:
    assert await evm_chain.rpc.chain_id() == CHAIN_ID == 1337
    assert evm_chain.rpc_url.startswith("http://127.0.0.1:")


async def test_the_dev_account_keys_are_the_nodes_funded_accounts(evm_chain: EvmChain) -> None:
    await check_accounts(evm_chain.rpc)
    reported = [a.lower() for a in await evm_chain.rpc.call("eth_accounts")]
    for account in dev_accounts():
        assert Account.from_key(account.private_key).address == account.address
        assert reported[account.index] == account.address.lower()
    assert dev_accounts()[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


async def test_a_signed_eth_transfer_moves_exactly_the_value_and_the_gas(evm_chain: EvmChain) -> None:
    sender, to = evm_chain.accounts[2], fresh_address()
    before = await evm_chain.balance(sender.address)
    tx_hash = await evm_chain.send_eth(sender, to, 12_345_678_901_234_567)
    receipt = await evm_chain.wait_receipt(tx_hash)
    gas = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    assert await evm_chain.balance(to) == 12_345_678_901_234_567
    assert await evm_chain.balance(sender.address) == before - 12_345_678_901_234_567 - gas


async def test_sends_in_a_row_and_at_once_get_consecutive_nonces(evm_chain: EvmChain) -> None:
    sender, to = evm_chain.accounts[3], fresh_address()
    start = await evm_chain.rpc.nonce(sender.address)
    in_a_row = [await evm_chain.send_eth(sender, to, 1) for _ in range(3)]
    at_once = await asyncio.gather(*(evm_chain.send_eth(sender, to, 1) for _ in range(3)))
    nonces = []
    for tx_hash in [*in_a_row, *at_once]:
        await evm_chain.wait_receipt(tx_hash)
        nonces.append(int((await evm_chain.rpc.call("eth_getTransactionByHash", tx_hash))["nonce"], 16))
    assert sorted(nonces) == list(range(start, start + 6))
    assert await evm_chain.balance(to) == 6


async def test_a_token_transfer_emits_a_transfer_log(evm_chain: EvmChain) -> None:
    deployer, to = evm_chain.accounts[4], fresh_address()
    token = await deploy_token(evm_chain.rpc, deployer.private_key)
    tx_hash = await evm_chain.send_token(deployer, to, 2_500_000, token=token)
    receipt = await evm_chain.wait_receipt(tx_hash)

    [log] = receipt["logs"]
    assert log["address"].lower() == token.lower()
    assert log["topics"] == [TRANSFER_TOPIC, topic_of(deployer.address), topic_of(to)]
    assert int(log["data"], 16) == 2_500_000
    block = int(receipt["blockNumber"], 16)
    [found] = await evm_chain.rpc.logs(block, block, [token], [TRANSFER_TOPIC])
    assert found["transactionHash"] == tx_hash
    assert await evm_chain.token_balance(to) == 0  # the session token is another contract
    assert await evm_chain.rpc.call(
        "eth_call", {"to": token, "data": "0x313ce567"}, "latest"
    ) == "0x" + "6".rjust(64, "0")  # decimals()


async def test_the_session_token_is_handed_out_to_every_account_but_the_deployer(evm_chain: EvmChain) -> None:
    # From the chain's history, not balances: other test modules spend from these accounts.
    deployer = evm_chain.accounts[0]
    logs = await evm_chain.rpc.logs(
        0, await evm_chain.block_number(), [evm_chain.token], [TRANSFER_TOPIC, topic_of(deployer.address)]
    )
    funded = {log["topics"][2]: int(log["data"], 16) for log in logs[:9]}
    assert funded == {topic_of(a.address): FUNDING_UNITS for a in evm_chain.accounts[1:]}


async def test_reverting_to_a_snapshot_removes_the_transaction(evm_chain: EvmChain) -> None:
    to = fresh_address()
    height = await evm_chain.block_number()
    snapshot_id = await evm_chain.snapshot()
    tx_hash = await evm_chain.send_eth(evm_chain.accounts[5], to, 10**15)
    await evm_chain.wait_receipt(tx_hash)
    await evm_chain.mine(2)
    assert await evm_chain.block_number() == height + 3

    await evm_chain.revert(snapshot_id)

    assert await evm_chain.block_number() == height
    assert await evm_chain.rpc.receipt(tx_hash) is None
    assert await evm_chain.balance(to) == 0
    # The account's nonce went back too: the next send is accepted and lands.
    await evm_chain.wait_receipt(await evm_chain.send_eth(evm_chain.accounts[5], to, 1))


def test_networks_json_is_what_the_invoice_service_reads(evm_chain: EvmChain) -> None:
    [network] = parse_networks(evm_chain.networks_json(confirmations=3, poll_seconds=0.5))
    assert (network.name, network.kind, network.chain_id) == ("ethereum", "evm", 1337)
    assert (network.node_url, network.confirmations, network.poll_seconds) == (evm_chain.rpc_url, 3, 0.5)
    [token] = network.tokens
    assert (token.symbol, token.contract, token.decimals) == ("USDC", evm_chain.token, 6)


def test_a_stopped_chain_leaves_no_process_and_frees_its_port(evm_node: DevChain, tmp_path: Path) -> None:
    chain = DevChain(log_path=tmp_path / "ganache.log").start()
    pid, port = chain.pid, chain.port
    assert pid is not None and pid_alive(pid)
    chain.stop()
    assert not pid_alive(pid)
    assert port_is_free(port)


async def test_the_chain_exits_when_the_process_that_started_it_is_killed(evm_node: DevChain) -> None:
    starter = (
        "from tools.devchain import DevChain\n"
        "chain = DevChain().start()\n"
        "print(chain.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", starter, cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        ganache = int(line)
        assert pid_alive(ganache)
        os.kill(proc.pid, signal.SIGKILL)  # no atexit, no finally: only the lifeline is left
        await proc.wait()
        await poll(lambda: not pid_alive(ganache), timeout=10, what="ganache to exit")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- tools.pay ----------------------------------------------------------------------------------


async def test_pay_sends_what_is_still_owed_in_eth(evm_chain: EvmChain) -> None:
    to = fresh_address()
    view = checkout_view(
        "inv_eth",
        crypto_currency="ETH",
        crypto_amount="0.010416666666666667",
        amount_paid="0.000416666666666667",
        payment_address=to,
        payment_uri=eip681_uri(to, 10_416_666_666_666_667, chain_id=1337),
        status="partial",
    )
    async with fake_gateway() as gateway:
        gateway.views["inv_eth"] = view
        out = io.StringIO()
        tx_hash = await pay.pay(
            "inv_eth", gateway=gateway.url, rpc_url=evm_chain.rpc_url, account=6, wait=False, out=out
        )
    await evm_chain.wait_receipt(tx_hash)
    assert await evm_chain.balance(to) == 10_000_000_000_000_000  # exactly 0.01 ETH in wei
    assert f"sent {tx_hash}" in out.getvalue()


async def test_pay_sends_usdc_to_the_payment_uris_token_and_waits_for_confirmed(evm_chain: EvmChain) -> None:
    to = fresh_address()
    owed = 25_000_000  # 25 USDC

    async def follow_the_chain() -> View:
        # Stands in for the watcher: paid once the tokens are there, confirmed two blocks later.
        paid = await evm_chain.token_balance(to)
        view = checkout_view(
            "inv_usdc",
            crypto_currency="USDC",
            crypto_amount="25.000000",
            amount_paid=str(Decimal(paid).scaleb(-6)),
            payment_address=to,
            payment_uri=eip681_erc20_uri(evm_chain.token, to, owed, chain_id=1337),
        )
        if paid >= owed:
            logs = await evm_chain.rpc.logs(
                0, await evm_chain.block_number(), [evm_chain.token], [TRANSFER_TOPIC, None, topic_of(to)]
            )
            depth = await evm_chain.block_number() - int(logs[0]["blockNumber"], 16) + 1
            view["status"] = "confirmed" if depth >= 3 else "paid"
            if depth < 3:
                await evm_chain.mine()
        return view

    async with fake_gateway() as gateway:
        gateway.views["inv_usdc"] = follow_the_chain
        out = io.StringIO()
        # No .dev state: the token address comes from the EIP-681 transfer URI alone.
        status = await pay.pay("inv_usdc", gateway=gateway.url, rpc_url=evm_chain.rpc_url, account=7, out=out)
    assert status == "confirmed"
    assert await evm_chain.token_balance(to) == owed
    printed = out.getvalue()
    assert "paid 25.000000 of 25.000000 USDC" in printed
    assert printed.index(" paid ") < printed.index(" confirmed ")


async def test_pay_on_the_command_line_with_an_amount(evm_chain: EvmChain, tmp_path: Path) -> None:
    to = fresh_address()
    async with fake_gateway() as gateway:
        gateway.views["inv_cli"] = checkout_view(
            "inv_cli",
            crypto_currency="ETH",
            crypto_amount="1.5",
            payment_address=to,
            payment_uri=eip681_uri(to, 1_500_000_000_000_000_000, chain_id=1337),
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tools.pay", "inv_cli", "--amount", "0.25", "--account", "8",
            "--gateway", gateway.url, "--rpc", evm_chain.rpc_url, "--no-wait",
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    tx_hash = stdout.decode().split("sent ", 1)[1].split()[0]
    await evm_chain.wait_receipt(tx_hash)
    assert await evm_chain.balance(to) == 250_000_000_000_000_000


@pytest.mark.parametrize(
    ("view_changes", "amount", "message"),
    [
        ({"amount_paid": "1.5", "status": "paid"}, None, "nothing left to pay"),
        ({"crypto_currency": "BTC"}, None, "cannot be paid on the dev chain"),
        ({}, Decimal("0.0000000000000000001"), "more than 18 decimals"),
        (
            {"payment_uri": "ethereum:0x0000000000000000000000000000000000000001?value=1"},
            None,
            "not the payment",
        ),
    ],
)
def test_pay_refuses_what_it_cannot_pay(view_changes: View, amount: Decimal | None, message: str) -> None:
    to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    view = checkout_view(
        "inv",
        crypto_currency="ETH",
        crypto_amount="1.5",
        payment_address=to,
        payment_uri=f"ethereum:{to}?value=1",
    )
    with pytest.raises(pay.PayError, match=message):
        pay.plan({**view, **view_changes}, amount, None)


def test_pay_takes_the_token_from_the_dev_state_when_the_uri_has_none() -> None:
    to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    chain = ChainInfo("http://127.0.0.1:8545", 1337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    view = checkout_view(
        "inv", crypto_currency="USDC", crypto_amount="10.5", payment_address=to, payment_uri=""
    )
    payment = pay.plan(view, None, chain)
    assert (payment.token, payment.to, payment.units) == (chain.token, to, 10_500_000)


def test_without_node_on_the_path_installing_fails_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NodeMissing, match="node and npm not found on PATH"):
        ensure_installed()
