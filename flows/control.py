"""The control plane's input to the live flow: what changed in the bots and user indicators
(docs/control.md).

``ControlSource`` has one partition (one worker of the cluster reads it; the changes are keyed by series
downstream, so each reaches the worker that owns its series). At start it reads the current bots and
user indicators as ``load`` changes, with the newest change id, in one REPEATABLE READ transaction
(``ControlStore.snapshot``); then every ``interval`` (0.5 s) the changes logged after that id, in id
order (``ControlStore.changes_since``), in a thread of its own: the worker only takes what was read (every
0.1 s when idle), so a slow or unreachable database never holds it. Writers log every change in the
transaction that makes it, in commit order, so a poll never skips one.

Delivery guarantee: each change once, in id order, within a run; a restart reads the current state
again (so nothing is lost, and nothing is applied twice: a load is idempotent downstream). The
partition's recovery snapshot is therefore nothing: the tables are the state. A database error is
logged once (and its end once) and the read is tried again at the next poll. The input ends when
``stop`` is set (the live flow's graceful stop).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Protocol

import psycopg
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from market.control import ControlChange

log = logging.getLogger(__name__)

POLL_INTERVAL = timedelta(milliseconds=500)
PAGE = 500
"""Changes read per query; a full page is followed by the next at once."""
TAKE_EVERY = timedelta(milliseconds=100)
"""How often an idle partition looks for what its thread has read."""


class ControlReader(Protocol):
    """What the source reads (``connectors.control_store.ControlStore``)."""

    def snapshot(self) -> tuple[int, list[ControlChange]]: ...

    def changes_since(self, cursor: int, limit: int = 500) -> list[ControlChange]: ...


class _ControlPartition(StatefulSourcePartition[ControlChange, None]):
    """Reads the changes in a thread of its own (a slow or unreachable database never holds the
    worker); ``next_batch`` only takes what the thread has read."""

    def __init__(self, store: ControlReader, stop: threading.Event | None, interval: timedelta) -> None:
        self.store = store
        self.stop = stop
        self.interval = interval
        self.cursor: int | None = None
        """The newest change id read (None: the current state not read yet)."""
        self.polls = 0
        """Reads tried so far (for tests and logs)."""
        self._read_changes: deque[ControlChange] = deque()
        self._failed: BaseException | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="control-changes", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        failing = False
        wait = 0.0
        while not self._closing.wait(wait) and not (self.stop is not None and self.stop.is_set()):
            wait = self.interval.total_seconds()
            self.polls += 1
            try:
                changes = self._read()
            except psycopg.Error as error:
                if not failing:
                    log.warning(
                        "the control changes cannot be read (%s); trying again every %.1f s",
                        " ".join(str(error).split()),
                        wait,
                    )
                    failing = True
                continue
            except Exception as error:  # a bug: raised in the dataflow by next_batch
                self._failed = error
                return
            if failing:
                log.info("the control changes are read again")
                failing = False
            self._read_changes.extend(changes)
            if len(changes) >= PAGE:  # more may wait beyond the page
                wait = 0.0

    def _read(self) -> list[ControlChange]:
        if self.cursor is None:
            cursor, changes = self.store.snapshot()
            self.cursor = cursor
            log.info("control: %d bots and user indicators loaded (change %d)", len(changes), cursor)
            return changes
        changes = self.store.changes_since(self.cursor, PAGE)
        if changes:
            self.cursor = changes[-1].change_id
        return changes

    def next_batch(self) -> list[ControlChange]:
        if self._failed is not None:
            raise self._failed
        if self.stop is not None and self.stop.is_set():
            raise StopIteration
        taken = self._read_changes
        return [taken.popleft() for _ in range(len(taken))]

    def next_awake(self) -> datetime | None:
        return None if self._read_changes else datetime.now(UTC) + TAKE_EVERY

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=10)
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
