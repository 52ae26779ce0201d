"""A hot standby of the embedded PostgreSQL, for `make up` (CHECKOUT_REPLICAS) and the tests.

The standby is a real streaming replica: `pg_basebackup -R` over the primary's unix socket (the
pgserver wheel ships the binaries), a physical replication slot so the primary keeps the WAL the
standby has not received (a standby stopped for a while still catches up), and its own socket
directory and port. Like the primary it listens on no TCP address at all.

    standby = Standby(primary_url, data_dir / "postgres-replica-1", "checkout_replica_1")
    url = standby.start()   # base backup on first start, then streaming
    standby.stop()          # the data directory stays: start() again resumes streaming
    standby.close()         # stops it, drops its slot on the primary, removes its data
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from tools.devservers.postgres import pg_bin, pg_user, postmaster_pid
from tools.devservers.processes import STOP_TIMEOUT, free_port, kill, pid_alive, tail, wait_for_exit

log = logging.getLogger("checkout.devservers")

BASEBACKUP_TIMEOUT = 120.0
START_TIMEOUT = 30.0
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def socket_of(url: str) -> tuple[str, str]:
    """(socket directory, port) of an embedded server's URL (`?host=<dir>&port=<n>`)."""
    query = parse_qs(urlsplit(url).query)
    hosts, ports = query.get("host"), query.get("port")
    if not hosts:
        raise ValueError(f"{url} is not a unix-socket URL of an embedded server")
    return hosts[0], (ports or ["5432"])[0]


class Standby:
    """One streaming standby of an embedded primary; see the module docstring."""

    def __init__(self, primary_url: str, data_dir: Path, slot: str) -> None:
        if not _SLOT_NAME.match(slot):
            raise ValueError(f"replication slot names are lower-case letters, digits and _: {slot!r}")
        self.primary_url = primary_url
        self.pgdata = Path(data_dir).expanduser().resolve()
        self.slot = slot
        self.port = free_port()  # names the socket file; unique so URLs tell the servers apart
        self._socket_dir: Path | None = None
        self._backed_up = False

    @property
    def url(self) -> str:
        assert self._socket_dir is not None, "start() the standby first"
        host = quote(str(self._socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={self.port}"

    @property
    def pid(self) -> int | None:
        pid = postmaster_pid(self.pgdata)
        return pid if pid is not None and pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> str:
        """Starts streaming; the first start takes the base backup. Returns the standby's URL."""
        if self.running:
            return self.url
        if not self._backed_up:
            self._base_backup()
        self._ensure_reachable()
        self._socket_dir = self._pick_socket_dir()
        options = f'-h "" -k {self._socket_dir} -p {self.port}'
        started = time.monotonic()
        self._pg(
            [pg_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", str(int(START_TIMEOUT)),
             "-l", str(self.pgdata / "log"), "-o", options, "start"],
            timeout=START_TIMEOUT + 10,
        )  # fmt: skip
        log.info(
            "started PostgreSQL standby on %s (pid %s, slot %s, %.1fs)",
            self.url, self.pid, self.slot, time.monotonic() - started,
        )  # fmt: skip
        return self.url

    def stop(self) -> None:
        """Stops the standby (fast shutdown: SIGINT to its postmaster); its data stays for the
        next start(). A signal, not `pg_ctl stop`: no process to spawn, so it is safe to call
        while a busy event loop and gRPC's threads run in this process."""
        pid = self.pid
        if pid is None:
            return
        kill(pid, signal.SIGINT)
        if not wait_for_exit(pid, STOP_TIMEOUT):
            log.warning("PostgreSQL standby (pid %d) ignored a fast shutdown; killing it", pid)
            kill(pid, signal.SIGKILL)
        log.info("stopped PostgreSQL standby in %s", self.pgdata)

    def close(self) -> None:
        """Stops the standby, drops its slot (the primary must not keep WAL for it) and its data."""
        self.stop()
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._drop_slot()
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self._backed_up = False

    # -- internals --------------------------------------------------------------------------------

    def _base_backup(self) -> None:
        host, port = socket_of(self.primary_url)
        # A crashed earlier run may have left the directory, its server, or its slot behind.
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self._drop_slot()
        self.pgdata.mkdir(parents=True, mode=0o700)
        user = pg_user()
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self._ensure_reachable()
        started = time.monotonic()
        # -R writes primary_conninfo and standby.signal; -C -S creates the slot it streams from.
        self._pg(
            [pg_bin("pg_basebackup"), "-D", str(self.pgdata), "-h", host, "-p", port, "-U", "postgres",
             "-R", "-X", "stream", "-c", "fast", "-C", "-S", self.slot],
            timeout=BASEBACKUP_TIMEOUT,
        )  # fmt: skip
        self._backed_up = True
        log.info("base backup for standby %s took %.1fs", self.slot, time.monotonic() - started)

    def _ensure_reachable(self) -> None:
        """Lets the server's user reach both data directories again. Every pytest session makes
        /tmp/pytest-of-<user> private again (0700), so a run started next to ours can cut the
        standby's (re)connection to the primary's socket off, and the base backup's access."""
        if pg_user() is None:
            return
        from pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(Path(socket_of(self.primary_url)[0]))

    def _drop_slot(self) -> None:
        host, port = socket_of(self.primary_url)
        sql = (
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = '{self.slot}' AND NOT active"
        )
        self._pg(
            [pg_bin("psql"), "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-qAt", "-c", sql],
            timeout=30,
        )

    def _pick_socket_dir(self) -> Path:
        from pgserver.postgres_server import PostgresServer
        from pgserver.utils import find_suitable_socket_dir

        # The data dir itself unless its path is too long for a unix socket (then a short one).
        directory: Path = find_suitable_socket_dir(self.pgdata, PostgresServer.runtime_path)
        if pg_user() is not None and directory != self.pgdata:
            directory.chmod(0o777)
        return directory

    def _pg(self, argv: list[str], *, timeout: float) -> str:
        user = pg_user()
        runuser = shutil.which("runuser") if user is not None else None
        # `runuser` rather than subprocess's user=: that forces a plain fork(), which has been
        # seen to crash a process whose gRPC threads are busy; runuser keeps the fast spawn.
        result = subprocess.run(
            ["runuser", "-u", user, "--", *argv] if runuser and user else argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            user=None if runuser else user,
            check=False,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()}\n"
                f"{tail(self.pgdata / 'log')}"
            )
        return result.stdout
