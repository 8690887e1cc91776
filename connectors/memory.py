"""In-process edges of a dataflow: a source over batches a function yields (candles or trades read
from the database, or held in memory) and a sink that hands each batch to a callback.

``BatchSource`` has one partition, read once from the start: it does not resume from a recovery
snapshot (a backtest is re-run, not resumed). It counts the time spent producing the batches
(``read_seconds``: the database reads and the row conversion of a backtest). ``CallbackSink`` delivers
every item exactly once, in the order its worker emitted them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

X = TypeVar("X")


class _BatchPartition(StatefulSourcePartition[X, None]):
    def __init__(self, source: BatchSource[X]) -> None:
        self.source = source
        self.batches = iter(source.batches())

    def next_batch(self) -> list[X]:
        started = time.perf_counter()
        try:
            batch = next(self.batches)
        finally:
            self.source.read_seconds += time.perf_counter() - started
        self.source.items_read += len(batch)
        return batch

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()


class BatchSource(FixedPartitionedSource[X, None], Generic[X]):
    """The items of the batches ``batches()`` yields, in order, as one partition."""

    def __init__(self, batches: Callable[[], Iterator[list[X]]]) -> None:
        self.batches = batches
        self.read_seconds = 0.0
        """Time spent inside ``batches`` (reading and converting), summed over the run."""
        self.items_read = 0

    def list_parts(self) -> list[str]:
        return ["batches"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BatchPartition[X]:
        return _BatchPartition(self)


def in_batches(items: Iterable[X], size: int = 10_000) -> Callable[[], Iterator[list[X]]]:
    """``items`` as a ``BatchSource``'s batches of at most ``size``."""

    def batches() -> Iterator[list[X]]:
        batch: list[X] = []
        for item in items:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    return batches


class _CallbackPartition(StatelessSinkPartition[X]):
    def __init__(self, deliver: Callable[[list[X]], None]) -> None:
        self.deliver = deliver

    def write_batch(self, items: list[X]) -> None:
        self.deliver(items)


class CallbackSink(DynamicSink[X], Generic[X]):
    """Calls ``deliver(items)`` with each batch a worker writes (from that worker's thread)."""

    def __init__(self, deliver: Callable[[list[X]], None]) -> None:
        self.deliver = deliver

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CallbackPartition[X]:
        return _CallbackPartition(self.deliver)
