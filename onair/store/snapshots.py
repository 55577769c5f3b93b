"""Read-through snapshots of rows that are read far more often than written (a stream polled by dashboards).

Correctness rests on a write generation: every statement that is not a read, and the commit of every
transaction that wrote, on this node's engine bumps it. A snapshot is stored with the generation seen
*before* its rows were read and served only while the generation is unchanged, so a write that lands during
or after the read (or a transaction that commits later) makes it stale at once. Any write invalidates
every snapshot: writes are rare next to reads, and the rule stays obviously right. Only writes through this
engine are seen: a node that shares its database with other writers (a cluster) must not use snapshots
without another signal.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Snapshots", "WriteGeneration"]

T = TypeVar("T")
_READS = ("SELECT", "PRAGMA", "SHOW", "EXPLAIN")
_WROTE = "onair_wrote"


class WriteGeneration:
    """A counter of the writes made through one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.value = 0
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._on_statement)
        event.listen(sync, "commit", self._on_commit)
        event.listen(sync, "rollback", self._on_rollback)

    def _on_statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip()[:8].upper().startswith(_READS):
            self.value += 1
            conn.info[_WROTE] = True

    def _on_commit(self, conn: Any) -> None:
        # the rows change for other connections only now: a snapshot read in between holds the old ones
        if conn.info.pop(_WROTE, False):
            self.value += 1

    def _on_rollback(self, conn: Any) -> None:
        conn.info.pop(_WROTE, None)


class Snapshots(Generic[T]):
    """Values loaded by `load(key)`, kept until the next write (at most `capacity`, least recently used out)."""

    def __init__(self, generation: WriteGeneration, capacity: int = 1024, enabled: bool = True) -> None:
        self.generation = generation
        self.capacity = capacity
        self.enabled = enabled
        self.entries: OrderedDict[Any, tuple[int, T]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def get(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        seen = self.generation.value
        entry = self.entries.get(key) if self.enabled else None
        if entry is not None and entry[0] == seen:
            self.hits += 1
            self.entries.move_to_end(key)
            return entry[1]
        self.misses += 1
        value = await load()
        if self.enabled:
            if self.generation.value == seen:
                self.entries[key] = (seen, value)
                self.entries.move_to_end(key)
                while len(self.entries) > self.capacity:
                    self.entries.popitem(last=False)
            else:
                self.entries.pop(key, None)
        return value
