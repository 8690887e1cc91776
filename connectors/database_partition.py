"""One Bytewax worker's database writes (the partition ``connectors.database.DatabaseSink`` builds).

Without ``overlap`` each batch is written before ``write_batch`` returns. With it, the flow computes
the next batch while a thread writes this one: the database's work (COPY, merge, rollup triggers,
commit) runs beside the flow's instead of after it. Batches are still written in order, one transaction
each, by one writer; the delivery guarantee is the writer's (``connectors.database``), except that a
batch is stored only by the time the next call returns, which is why overlap stays off under Bytewax
recovery (see ``DatabaseSink``).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from bytewax.outputs import StatelessSinkPartition

from connectors.spool import StoredItem

if TYPE_CHECKING:
    from connectors.database import DatabaseWriter


class DatabasePartition(StatelessSinkPartition[StoredItem]):
    """One worker's writes. With ``overlap`` a batch is written by a thread while the flow computes the
    next one: each ``write_batch`` (and ``close``) first waits for the batch before it, so batches are
    written in order with at most one in flight, and a write's error is raised by the next call."""

    def __init__(self, writer: DatabaseWriter, overlap: bool = False) -> None:
        self.writer = writer
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="database-writer") if overlap else None
        self._pending: Future[None] | None = None

    def write_batch(self, items: list[StoredItem]) -> None:
        if self._thread is None:
            self.writer.write(items)
            return
        self.wait()
        self._pending = self._thread.submit(self.writer.write, items)

    def wait(self) -> None:
        """Return once the batch in flight (if any) is written or spooled; raise what its write raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._thread is not None:
                self._thread.shutdown()
            self.writer.close()
