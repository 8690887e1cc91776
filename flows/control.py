"""The control plane's input to the live flow: what changed in the bots and user indicators
(docs/control.md).

``ControlSource`` has one partition (one worker of the cluster reads it; the changes are keyed by series
downstream, so each reaches the worker that owns its series). At start it reads the current bots and
user indicators as ``load`` changes, with the newest change id, in one REPEATABLE READ transaction
(``ControlStore.snapshot``); then every ``interval`` (0.5 s) the changes logged after that id, in id
order (``ControlStore.changes_since``). Writers log every change in the transaction that makes it, in
commit order, so a poll never skips one.

Delivery guarantee: each change once, in id order, within a run; a restart reads the current state
again (so nothing is lost, and nothing is applied twice: a load is idempotent downstream). The
partition's recovery snapshot is therefore nothing: the tables are the state. A database error is
logged once (and its end once) and the read is tried again at the next poll; the worker is never held
longer than one query. The input ends when ``stop`` is set (the live flow's graceful stop).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

import psycopg
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from market.control import ControlChange

log = logging.getLogger(__name__)

POLL_INTERVAL = timedelta(milliseconds=500)
PAGE = 500
"""Changes read per query; a full page is followed by the next at once."""


class ControlReader(Protocol):
    """What the source reads (``connectors.control_store.ControlStore``)."""

    def snapshot(self) -> tuple[int, list[ControlChange]]: ...

    def changes_since(self, cursor: int, limit: int = 500) -> list[ControlChange]: ...


class _ControlPartition(StatefulSourcePartition[ControlChange, None]):
    def __init__(self, store: ControlReader, stop: threading.Event | None, interval: timedelta) -> None:
        self.store = store
        self.stop = stop
        self.interval = interval
        self.cursor: int | None = None
        """The newest change id read (None: the current state not read yet)."""
        self.due = datetime.now(UTC)
        self.failing = False

    def next_batch(self) -> list[ControlChange]:
        if self.stop is not None and self.stop.is_set():
            raise StopIteration
        now = datetime.now(UTC)
        if now < self.due:
            return []
        self.due = now + self.interval
        try:
            changes = self._read()
        except psycopg.Error as error:
            if not self.failing:
                log.warning(
                    "the control changes cannot be read (%s); trying again every %.1f s",
                    " ".join(str(error).split()),
                    self.interval.total_seconds(),
                )
                self.failing = True
            return []
        if self.failing:
            log.info("the control changes are read again")
            self.failing = False
        return changes

    def _read(self) -> list[ControlChange]:
        if self.cursor is None:
            self.cursor, changes = self.store.snapshot()
            log.info("control: %d bots and user indicators loaded (change %d)", len(changes), self.cursor)
            return changes
        changes = self.store.changes_since(self.cursor, PAGE)
        if changes:
            self.cursor = changes[-1].change_id
        if len(changes) >= PAGE:  # more may wait beyond the page
            self.due = datetime.now(UTC)
        return changes

    def next_awake(self) -> datetime | None:
        return self.due

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


class ControlSource(FixedPartitionedSource[ControlChange, None]):
    """The control changes (``market.control.ControlChange``): the current state at start, then each
    change as it is logged, polled every ``interval``; ends when ``stop`` is set."""

    def __init__(
        self,
        store: ControlReader,
        stop: threading.Event | None = None,
        interval: timedelta = POLL_INTERVAL,
    ) -> None:
        self.store = store
        self.stop = stop
        self.interval = interval

    def list_parts(self) -> list[str]:
        return ["control"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ControlPartition:
        return _ControlPartition(self.store, self.stop, self.interval)
