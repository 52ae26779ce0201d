"""Exit with the launcher: a process started by `make up` or the tests stops itself when the
process that started it is gone, even if that one was killed with SIGKILL and could not stop
its children. The launcher sets CHECKOUT_PARENT_PID; without it nothing happens."""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_with_parent(interval: float = 1.0) -> None:
    expected = os.environ.get("CHECKOUT_PARENT_PID", "")
    if not expected.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(interval)
        # Our normal graceful path: the same as a SIGTERM from the launcher.
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
