"""The faults themselves: each process SIGKILLed and started again, each server restarted, one at
a time at random moments; and a process that exits by itself started again, as Kubernetes would
(a service that cannot reach PostgreSQL while it starts exits)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from libs.common.config import SERVICES
from tools.devservers import DevServers
from tools.devstack import Stack

log = logging.getLogger("checkout.faults")
PROCESSES = (*SERVICES, "gateway")
SERVERS = ("postgres", "nats-server", "redis-server")


@dataclass
class Faults:
    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    # Processes that exited on their own (a service that cannot reach PostgreSQL while starting
    # exits, as it would under Kubernetes) and were started again, as Kubernetes would.
    exits: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    killing: set[str] = field(default_factory=set)


def plan(rng: random.Random, kill_rounds: int, server_restarts: int) -> list[tuple[str, str]]:
    actions = [("kill", p) for p in PROCESSES for _ in range(kill_rounds)]
    actions += [("restart", s) for s in SERVERS for _ in range(server_restarts)]
    rng.shuffle(actions)
    return actions


async def inject(
    stack: Stack,
    servers: DevServers,
    faults: Faults,
    rng: random.Random,
    *,
    kill_rounds: int,
    server_restarts: int,
) -> None:
    """SIGKILLs processes and restarts servers at random moments, one at a time."""
    for action, name in plan(rng, kill_rounds, server_restarts):
        await asyncio.sleep(rng.uniform(0.5, 2.5))
        down = rng.uniform(0.2, 2.0)
        if action == "kill":
            faults.killing.add(name)
            try:
                await asyncio.to_thread(stack.kill, name)
                await asyncio.sleep(down)
                await asyncio.to_thread(stack.restart, name)
            finally:
                faults.killing.discard(name)
            faults.kills[name] += 1
        else:
            # PostgreSQL goes down without a checkpoint (immediate mode), Redis by SIGKILL; NATS
            # shuts down cleanly, as a rolling restart of a JetStream node would.
            await asyncio.to_thread(servers.stop_server, name, kill=name != "nats-server")
            await asyncio.sleep(down)
            await asyncio.to_thread(servers.start_server, name)
            faults.restarts[name] += 1
        faults.log.append(f"{action} {name} ({down:.1f}s down)")
        log.info("fault: %s %s, down %.1fs", action, name, down)


async def keep_running(stack: Stack, faults: Faults) -> None:
    """Starts again a process that exited by itself (not one being killed on purpose)."""
    while True:
        await asyncio.sleep(0.5)
        for name, process in list(stack.processes.items()):
            if name in faults.killing or process.poll() is None:
                continue
            log.warning("%s exited with %s by itself; starting it again", name, process.returncode)
            faults.exits[name] += 1
            faults.log.append(f"{name} exited with {process.returncode}; started again")
            await asyncio.to_thread(stack.restart, name)
