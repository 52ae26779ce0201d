"""The invoice service's background work: the expiry job and one chain watcher per network."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import asyncpg

from libs.common.evm_rpc import EvmRpc
from libs.common.service import Runtime
from libs.common.supervise import Loop
from services.invoice.application import InvoiceApp
from services.invoice.chains.bitcoin import BitcoinWatcher
from services.invoice.chains.esplora import EsploraClient
from services.invoice.chains.evm import EvmWatcher
from services.invoice.chains.positions import ChainPositions
from services.invoice.ledger import InvoiceLedger

log = logging.getLogger("checkout.invoice.jobs")


async def expire_invoices(runtime: Runtime, app: InvoiceApp) -> None:
    ledger = InvoiceLedger(runtime, app)
    while True:
        try:
            await ledger.expire_due()
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("expiry job failed, will retry: %s", error)
        await asyncio.sleep(runtime.config.expiry_poll_seconds)


async def watch_evm(runtime: Runtime, app: InvoiceApp, network_name: str) -> None:
    network = runtime.config.network(network_name)
    assert network is not None
    positions = ChainPositions(lambda: [pool for _, pool in runtime.pools.items()], network.name)
    rpc = EvmRpc(network.node_url)
    try:
        await EvmWatcher(network, InvoiceLedger(runtime, app), rpc, positions).run()
    finally:
        with contextlib.suppress(Exception):
            await rpc.aclose()


async def watch_bitcoin(runtime: Runtime, app: InvoiceApp, network_name: str) -> None:
    network = runtime.config.network(network_name)
    assert network is not None
    async with EsploraClient(network.node_url) as client:
        await BitcoinWatcher(network, InvoiceLedger(runtime, app), client).run()


def background(runtime: Runtime, app: InvoiceApp) -> list[Loop]:
    """The expiry job, and one watcher per configured network in this process, watching the
    addresses of every shard it serves (each run supervised: a watcher that fails starts over
    from its saved position, with a ledger of its own whose watch set is read afresh)."""
    jobs = [Loop("invoice-expiry", functools.partial(expire_invoices, runtime, app))]
    for network in runtime.config.networks:
        watch = watch_evm if network.kind == "evm" else watch_bitcoin
        jobs.append(Loop(f"watcher-{network.name}", functools.partial(watch, runtime, app, network.name)))
    return jobs
