"""Embedded PostgreSQL (with streaming standbys), NATS and Redis for the tests, the benchmarks
and the local dev stack: dev-only, so it lives in tools/ and the image never ships it.

`servers` owns the servers (DevServers); `processes` spawns and stops processes; `postgres`
drives pgserver's postmaster; `standby` makes hot standbys of it.
"""

from tools.devservers.processes import LOOPBACK, free_port, free_ports
from tools.devservers.servers import DATABASE_URL_ENV, NATS_URL_ENV, REDIS_URL_ENV, DevServers, Servers

__all__ = [
    "DATABASE_URL_ENV",
    "LOOPBACK",
    "NATS_URL_ENV",
    "REDIS_URL_ENV",
    "DevServers",
    "Servers",
    "free_port",
    "free_ports",
]
