"""`npm ci` for the dev chain's pinned ganache, run only when node_modules is missing or stale."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK_FILE = HERE / "package-lock.json"
NODE_MODULES = HERE / "node_modules"
# Written after a successful `npm ci`: the lock file it installed, so a changed lock reinstalls.
STAMP = NODE_MODULES / ".checkout-lock-sha256"
INSTALL_TIMEOUT = 600.0


class NodeMissing(RuntimeError):
    """node or npm is not on PATH: the dev chain cannot run."""


class InstallFailed(RuntimeError):
    """`npm ci` failed; the message carries the end of its output."""


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def _lock_digest() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()


def is_installed() -> bool:
    try:
        return STAMP.read_text().strip() == _lock_digest()
    except OSError:
        return False


def ensure_installed(*, quiet: bool = True) -> bool:
    """Install ganache into tools/devchain/node_modules if needed; True when it ran `npm ci`.

    Safe to call from several processes at once (`make up` next to `make test`): a file lock
    serialises them and the second finds the stamp in place.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing = " and ".join(n for n in ("node", "npm") if shutil.which(n) is None)
        raise NodeMissing(
            f"{missing} not found on PATH: the local EVM dev chain (ganache) needs Node.js 18+ "
            "with npm; install it from https://nodejs.org or your package manager"
        )
    if is_installed():
        return False
    # The lock file itself is the mutex: no extra file to ignore or clean up.
    with open(LOCK_FILE, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_installed():
            return False
        started = time.monotonic()
        result = subprocess.run(
            ["npm", "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=INSTALL_TIMEOUT,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-3000:]
            raise InstallFailed(f"npm ci in {HERE} failed with exit status {result.returncode}:\n{tail}")
        STAMP.write_text(_lock_digest() + "\n")
        if not quiet:
            print(f"installed ganache with npm ci in {time.monotonic() - started:.1f}s", flush=True)
        return True
