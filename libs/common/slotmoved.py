"""A write that found its slot moved away: how a service tells, and what it does about it.

The source shard of a slot move refuses writes in the moved slots with SQLSTATE CKMOV (the
trigger libs/common/slotmove.py installs). Commands that were waiting at the move's fence get
it the moment the fence lifts, as does any process whose shard map predates the switch. Their
transaction rolled back whole, so the call is simply run again after the service has read the
new map (`ShardDirectory.refresh`): it then goes to the slot's new owner. The client sees a
slower answer, never an error.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from libs.common.shardmap import ShardMap

SLOT_MOVED = "CKMOV"


class MapView(Protocol):
    """A process's live shard map (libs/common/shardstore.ShardDirectory)."""

    current: ShardMap

    async def refresh(self) -> bool: ...


# How long a call that found its slot moved waits for the new map: the mover publishes it the
# moment the fence lifts, so this is only reached while a mover that died mid-fence is resumed.
WAIT_FOR_MAP_SECONDS = 3.0
_POLL_SECONDS = 0.05


def is_slot_moved(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, is a write refused for a moved slot."""
    seen = 0
    while error is not None and seen < 8:
        if getattr(error, "sqlstate", None) == SLOT_MOVED:
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


async def await_new_map(view: MapView, after_version: int, seconds: float = WAIT_FOR_MAP_SECONDS) -> bool:
    """Reads the map until it is newer than `after_version` (or `seconds` pass); whether it is."""
    deadline = time.monotonic() + seconds
    while view.current.version <= after_version:
        if time.monotonic() >= deadline:
            return False
        await view.refresh()
        if view.current.version <= after_version:
            await asyncio.sleep(_POLL_SECONDS)
    return True
