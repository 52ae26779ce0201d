"""A write that found its slot moved away: how a service tells, and what it does about it.

The source shard of a slot move refuses writes in the moved slots with SQLSTATE CKMOV (the
trigger libs/common/slotmove.py installs). Commands that were waiting at the move's fence get
it the moment the fence lifts, as does any process whose shard map predates the switch. Their
transaction rolled back whole, so the call is simply run again after the service has read the
new map (`ShardDirectory.refresh`): it then goes to the slot's new owner. The client sees a
slower answer, never an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

SLOT_MOVED = "CKMOV"

# What a service does before it runs the call again: read the shard map anew.
Refresh = Callable[[], Awaitable[object]]


def is_slot_moved(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, is a write refused for a moved slot."""
    seen = 0
    while error is not None and seen < 8:
        if getattr(error, "sqlstate", None) == SLOT_MOVED:
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
