"""The embedded PostgreSQL's postmaster (from the `pgserver` wheel): stopping and starting it
with pg_ctl, and pgserver's list of the processes holding a handle on its data dir.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

from tools.devservers.processes import (
    START_ATTEMPTS,
    START_TIMEOUT,
    STOP_TIMEOUT,
    kill,
    pid_alive,
    tail,
    wait_for_exit,
)

log = logging.getLogger("checkout.devservers")

# pgserver records the pids holding a handle on a data dir here and only stops PostgreSQL when the
# last one lets go; a crashed owner's pid would otherwise keep the server alive forever.
PG_HANDLES_FILE = ".handle_pids.json"


def import_pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for XDG_RUNTIME_DIR at import; it is unset in CI and
        # containers, and the fallback (/tmp/runtime-<uid>) is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver
    return pgserver


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def pg_bin(name: str) -> str:
    """The path of one of the PostgreSQL programs the pgserver wheel ships (pg_ctl, psql...)."""
    import_pgserver()
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def pg_user() -> str | None:
    # pg_ctl refuses to run as root; pgserver runs the server as its own "pgserver" user then
    # (a standby too: it must read the primary's files it copies).
    return "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def stop_postmaster(pgdata: Path, mode: str = "fast") -> None:
    """`pg_ctl stop` (fast mode, or immediate: no checkpoint) for a postmaster on `pgdata`."""
    pid = postmaster_pid(pgdata)
    if pid is None or not pid_alive(pid):
        return
    log.info("stopping PostgreSQL (pid %d) on %s", pid, pgdata)
    result = subprocess.run(
        [pg_bin("pg_ctl"), "-D", str(pgdata), "-m", mode, "-w", "stop"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=pg_user(),
        check=False,
        timeout=STOP_TIMEOUT + 5,
    )
    if not wait_for_exit(pid, STOP_TIMEOUT):
        log.warning("pg_ctl stop exited %d, PostgreSQL still up; killing it", result.returncode)
        kill(pid, signal.SIGKILL)
        wait_for_exit(pid, STOP_TIMEOUT)


def start_postmaster(pgdata: Path, socket_dir: Path) -> int:
    """Starts PostgreSQL on `pgdata` as pgserver does (unix socket only); returns its pid."""
    argv = [pg_bin("pg_ctl"), "-D", str(pgdata), "-w", "-t", str(int(START_TIMEOUT))]
    argv += ["-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"]
    # Right after an immediate stop the old server's backends may still hold its shared memory
    # for a moment, and the new postmaster refuses to start: try again shortly.
    for attempt in range(1, START_ATTEMPTS + 2):
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=pg_user(),
            check=False,
            timeout=START_TIMEOUT + 5,
        )
        if result.returncode == 0:
            break
        log.warning("pg_ctl start exited %d (attempt %d); retrying", result.returncode, attempt)
        time.sleep(1.0)
    else:
        raise RuntimeError(f"PostgreSQL did not start again on {pgdata}:\n{tail(pgdata / 'log')}")
    pid = postmaster_pid(pgdata)
    if pid is None:
        raise RuntimeError(f"PostgreSQL on {pgdata} started but wrote no postmaster.pid")
    log.info("restarted embedded PostgreSQL on %s (pid %d)", pgdata, pid)
    return pid


def read_pg_handles(pgdata: Path) -> list[int]:
    try:
        raw = json.loads((pgdata / PG_HANDLES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [p for p in raw if isinstance(p, int)] if isinstance(raw, list) else []


def prune_pg_handles(pgdata: Path) -> None:
    """Drop dead processes from pgserver's handle list so our stop() really stops the server."""
    path = pgdata / PG_HANDLES_FILE
    if not path.exists():
        return
    handles = read_pg_handles(pgdata)
    alive = [p for p in handles if pid_alive(p)]
    if alive != handles:
        log.info("forgetting dead PostgreSQL handle holders %s", sorted(set(handles) - set(alive)))
        path.write_text(json.dumps(alive))
