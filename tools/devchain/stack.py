"""The dev chain as `make up` runs it: on 127.0.0.1:8545 with a block every 2 s, kept in .dev/
between runs (like the stack's databases, so the watcher's saved position stays valid), the test
USDC deployed once, and .dev/devchain.json written for `make pay`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from libs.common.evm_rpc import EvmRpc
from tools.devchain.accounts import check_accounts, dev_accounts
from tools.devchain.chain import CHAIN_ID, DEFAULT_PORT, ChainInfo, DevChain, networks_json, port_is_free
from tools.devchain.install import ensure_installed, node_available
from tools.devchain.tx import setup_token
from tools.devservers import free_port

BLOCK_TIME = 2.0
CONFIRMATIONS = 3
STATE_FILE_NAME = "devchain.json"


@dataclass(frozen=True)
class StackChain:
    chain: DevChain
    info: ChainInfo

    def env(self) -> dict[str, str]:
        """For the invoice service: watch this chain and its token."""
        return {
            "CHECKOUT_NETWORKS": networks_json(
                self.info.rpc_url, self.info.token, confirmations=CONFIRMATIONS, poll_seconds=1
            ),
            "CHECKOUT_ETHEREUM_CHAIN_ID": str(CHAIN_ID),
        }


async def _prepare(chain: DevChain, previous: ChainInfo | None) -> ChainInfo:
    async with EvmRpc(chain.rpc_url) as rpc:
        await check_accounts(rpc)
        if previous is not None and await rpc.call("eth_getCode", previous.token, "latest") not in (
            "0x",
            None,
        ):
            token = previous.token  # the chain was kept on disk: the token is still there
        else:
            token = await setup_token(rpc, dev_accounts())
        return ChainInfo(rpc_url=chain.rpc_url, chain_id=await rpc.chain_id(), token=token)


@contextmanager
def stack_chain(data_dir: Path, *, port: int = DEFAULT_PORT) -> Iterator[StackChain | None]:
    """The running chain, or None (said on the terminal) when Node.js is not installed."""
    state = data_dir / STATE_FILE_NAME
    if not node_available():
        state.unlink(missing_ok=True)
        print(
            "node/npm not found: no local EVM dev chain, so payments will not be watched "
            "(install Node.js 18+ to get one)",
            flush=True,
        )
        yield None
        return
    ensure_installed(quiet=False)
    chosen = port if port_is_free(port) else free_port()
    if chosen != port:
        print(f"port {port} is taken: the dev chain listens on {chosen} instead", flush=True)
    work = data_dir / "devchain"
    try:
        previous: ChainInfo | None = ChainInfo.load(state)
    except (OSError, ValueError, KeyError):
        previous = None
    with DevChain(chosen, block_time=BLOCK_TIME, log_path=work / "ganache.log", db_path=work / "db") as chain:
        info = asyncio.run(_prepare(chain, previous))
        info.save(state)
        yield StackChain(chain, info)
