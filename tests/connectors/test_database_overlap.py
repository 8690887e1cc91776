"""The database sink with ``overlap``: each batch is written by a thread while the next is computed;
batches are written in order, one in flight, a write's error comes out of the next call, and closing
writes the last batch. Stored rows are those of the plain sink, and a batch COPYed in pieces that
conflicts with stored rows partway is still stored whole, once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from connectors.database import DatabaseSink, DatabaseWriter
from connectors.database_partition import DatabasePartition
from connectors.spool import StoredItem
from tests.connectors.database_kit import rows, tape_trades


class _Recorder(DatabaseWriter):
    """A writer that records the batches it is given (and may fail one), with no database."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[list[StoredItem]] = []
        self.threads: set[str] = set()
        self.fail_at = fail_at
        self.closed = False

    def write(self, items: object) -> None:
        self.threads.add(threading.current_thread().name)
        if self.fail_at == len(self.batches):
            raise RuntimeError("refused")
        self.batches.append(list(items))  # type: ignore[call-overload]

    def close(self) -> None:
        self.closed = True


def test_batches_are_written_in_order_by_one_thread_and_the_last_on_close() -> None:
    recorder = _Recorder()
    part = DatabasePartition(recorder, overlap=True)
    trades = tape_trades(50)
    for k in range(10):
        part.write_batch(list(trades[k * 5 : (k + 1) * 5]))
    part.close()
    assert recorder.batches == [trades[k * 5 : (k + 1) * 5] for k in range(10)]
    assert len(recorder.threads) == 1 and threading.current_thread().name not in recorder.threads
    assert recorder.closed


def test_a_failed_write_is_raised_by_the_next_call() -> None:
    recorder = _Recorder(fail_at=1)
    part = DatabasePartition(recorder, overlap=True)
    trades = tape_trades(3)
    part.write_batch([trades[0]])
    part.write_batch([trades[1]])  # fails in the thread
    with pytest.raises(RuntimeError, match="refused"):
        part.write_batch([trades[2]])
    part.close()
    assert recorder.batches == [[trades[0]]] and recorder.closed


def test_a_failed_last_write_is_raised_by_close() -> None:
    recorder = _Recorder(fail_at=0)
    part = DatabasePartition(recorder, overlap=True)
    part.write_batch(tape_trades(1))
    with pytest.raises(RuntimeError, match="refused"):
        part.close()
    assert recorder.closed


def test_without_overlap_the_write_is_done_on_return() -> None:
    recorder = _Recorder()
    part = DatabasePartition(recorder)
    part.write_batch(tape_trades(2))
    assert len(recorder.batches) == 1 and recorder.threads == {threading.current_thread().name}
    part.close()


@pytest.mark.parametrize("overlap", [False, True])
def test_the_overlapped_sink_stores_what_the_plain_one_stores(
    migrated: str, tmp_path: Path, overlap: bool
) -> None:
    trades = tape_trades(3000)
    part = DatabaseSink(migrated, tmp_path / "spool", overlap=overlap).build("database", 0, 1)
    for k in range(0, 3000, 700):
        part.write_batch(list(trades[k : k + 700]))
    part.write_batch(list(trades[:700]))  # a re-delivery changes nothing
    part.close()
    stored = rows(migrated, "SELECT trade_id, price::text, size::text, time FROM trades ORDER BY trade_id")
    assert stored == [(t.trade_id, str(t.price), str(t.size), t.ts_event) for t in trades]
    assert part.writer.stats.trades_inserted == 3000 and part.writer.stats.trades_duplicate == 700


def test_a_redelivery_that_conflicts_after_the_first_piece_stores_every_row_once(
    migrated: str, tmp_path: Path
) -> None:
    trades = tape_trades(3000)
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write(trades[1500:2600])  # stored: the conflict comes in the second 1,000-row piece
    writer.write(trades)
    writer.close()
    stored = rows(migrated, "SELECT trade_id FROM trades ORDER BY trade_id")
    assert stored == [(t.trade_id,) for t in trades]
    assert writer.stats.trades_inserted == 3000 and writer.stats.trades_duplicate == 1100
