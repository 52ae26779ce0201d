"""Base class for event-sourced aggregates (stdlib only, so domain modules stay I/O free).

A command method checks its guard, then `_emit`s a past-tense event; `_apply` is the only place
state changes, used both for new events and when replaying stored ones.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar


class Aggregate:
    aggregate_type: ClassVar[str]

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        self.id = aggregate_id
        self.version = 0
        self.pending: list[Any] = []

    def _emit(self, event: Any) -> None:
        self._apply(event)
        self.version += 1
        self.pending.append(event)

    def _apply(self, event: Any) -> None:
        raise NotImplementedError

    def replay(self, event: Any, version: int) -> None:
        self._apply(event)
        self.version = version

    def snapshot(self) -> dict[str, Any]:
        """State as JSON; aggregates that want snapshots override this and `restore`."""
        raise NotImplementedError

    def restore(self, data: dict[str, Any]) -> None:
        raise NotImplementedError
