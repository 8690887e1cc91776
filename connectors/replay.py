"""Replaying recorded tapes (OKX archive CSV) as a Bytewax source.

Each tape is read in its row order, which is its arrival order: a sorted archive and a recording whose
trades arrived out of event-time order are both replayed as they are, so the candle step's watermark
follows arrival order exactly as live (``connectors.tape.read_arrivals``). Tapes that share an
instrument are combined into one partition by ``connectors.tape.merge_arrivals`` (each tape keeps its
row order; across tapes the earliest head by (ts_event, trade_id) comes first: sorted tapes interleave
in time order). Tapes with disjoint instruments are separate partitions that workers read in parallel;
output is per instrument identical either way, because candles are built per instrument.

A bad row is a ``Rejected`` item (to the ``rejects`` table) and the replay goes on; a file that is not a
tape stops it at the start with a ``TapeError`` naming the file.

Progress: ``TapeSource.total_rows`` is the tapes' row count (counted once, at the start) and
``TapeSource.rows_read`` what this process's partitions have emitted so far (a plain counter per batch).

Delivery guarantee: exactly once per execution; on resume from a Bytewax snapshot a partition skips
the items it had already emitted (its resume state is that count), so re-emission is limited to what
followed the last snapshot, which the idempotent sinks absorb.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.tape import TapeError, TapeSummary, merge_arrivals, scan_tape
from connectors.tape_survey import survey_tape
from market.types import Rejected, Trade

TapeItem = Trade | Rejected


def group_tapes(tapes: Sequence[TapeSummary]) -> list[list[Path]]:
    """Group tapes so that tapes sharing any instrument land in the same group (stable order)."""
    return [paths for paths, _ in _groups(tapes)]


def _groups(tapes: Sequence[TapeSummary]) -> list[tuple[list[Path], frozenset[str]]]:
    """The groups of :func:`group_tapes` with the instruments of each."""
    groups: list[tuple[set[str], list[Path]]] = []
    for tape in tapes:
        instruments = set(tape.instruments)
        touching = [g for g in groups if g[0] & instruments]
        merged_instruments = instruments.union(*(g[0] for g in touching))
        merged_paths = [p for g in touching for p in g[1]] + [Path(tape.path)]
        groups = [g for g in groups if g not in touching] + [(merged_instruments, merged_paths)]
    return [(sorted(g[1]), frozenset(g[0])) for g in groups]


def instrument_ends(tapes: Sequence[TapeSummary], declared_end: datetime | None) -> dict[str, datetime]:
    """Per instrument, where its replay ends (TIME.md rule 9): the declared end if given, else the
    latest trade time of the tapes holding it (the maximum ``ts_event``, wherever its row is)."""
    ends: dict[str, datetime] = {}
    for tape in tapes:
        end = declared_end or tape.end
        if end is None:  # no valid trade: nothing of it to end
            continue
        for symbol in tape.instruments:
            ends[symbol] = max(end, ends.get(symbol, end))
    return ends


def _settled(tapes: Sequence[TapeSummary]) -> list[TapeSummary]:
    """In a cluster, a tape whose end is found by reading it must be read by the process that builds its
    instruments' candles: true of a group of one instrument (read where it is built), not of a group of
    several, whose tapes are therefore scanned first as before."""
    shared = {path for paths, instruments in _groups(tapes) if len(instruments) > 1 for path in paths}
    return [scan_tape(t.path) if not t.known_end and Path(t.path) in shared else t for t in tapes]


def count_rows(path: Path, chunk: int = 1 << 20) -> int:
    """The rows of a tape after its header (a count of line ends, without parsing)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(0, lines + (last != b"\n") - 1)


def _not_after(until: datetime) -> Callable[[TapeItem], bool]:
    def keep(item: TapeItem) -> bool:
        return isinstance(item, Rejected) or item.ts_event <= until

    return keep


class _TapePartition(StatefulSourcePartition[TapeItem, int]):
    def __init__(
        self,
        paths: Sequence[Path],
        skip: int,
        batch_size: int,
        until: datetime | None,
        ended: Callable[[int, datetime | None], None] | None = None,
    ) -> None:
        items: Iterator[TapeItem] = merge_arrivals(paths, ended)
        if until is not None:
            # Arrival order is not time order: a trade after the end may be followed by one before it.
            items = filter(_not_after(until), items)
        self._items = items
        self._emitted = skip
        self.read = 0
        """Items emitted by this partition in this execution (for progress)."""
        self._batch_size = batch_size
        if skip:
            next(itertools.islice(self._items, skip, skip), None)

    def next_batch(self) -> list[TapeItem]:
        batch = list(itertools.islice(self._items, self._batch_size))
        if not batch:
            raise StopIteration()
        self._emitted += len(batch)
        self.read += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._emitted


class TapeSource(FixedPartitionedSource[TapeItem, int]):
    """Trades from OKX-archive CSV tapes in each tape's row (arrival) order, and bad rows as ``Rejected``.

    The tapes are surveyed once when the source is made (a file that is not a tape raises ``TapeError``
    here; ``connectors.tape_survey``): ``ends`` gives each instrument's replay end for the candle step,
    filled in as partitions finish for a tape whose end is only known once read.

    In a cluster, ``builds`` tells which instruments' candles this process builds (Bytewax routes each
    instrument's trades to one worker by key); a process then lists only the partitions whose leading
    instrument (the least name) it builds, so every partition is read by exactly one process, on the
    worker its trades go to, and they never cross between processes."""

    def __init__(
        self,
        paths: Sequence[Path],
        until: datetime | None = None,
        batch_size: int = 10_000,
        builds: Callable[[str], bool] | None = None,
        scanned: Sequence[TapeSummary] | None = None,
    ) -> None:
        """``until``: the declared end of the replay; trades stamped after it are skipped (rule 9).
        ``batch_size``: items per batch; every batch costs the flow a few steps and the database a few
        transactions, so a replay moves large ones. ``builds``: in a cluster, whether this process
        builds an instrument's candles (default: all, one process). ``scanned``: the tapes' summaries
        (``scan_tape``, in the order of ``paths``) if the caller has already read them, so the tapes are
        not scanned a second time."""
        if not paths:
            raise ValueError("no tapes to replay")
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise TapeError(missing[0], 0, "tape not found")
        if scanned is not None and [Path(t.path) for t in scanned] != [Path(p) for p in paths]:
            raise ValueError("the summaries given are not those of the tapes")
        tapes = list(scanned) if scanned is not None else [survey_tape(path) for path in paths]
        if until is None and builds is not None:
            tapes = _settled(tapes)
        self._unknown = {Path(t.path): t.instruments for t in tapes if not t.known_end and until is None}
        groups = _groups(tapes)
        self.groups = [group for group, _ in groups]
        self._local = [
            index
            for index, (_, instruments) in enumerate(groups)
            if builds is None or builds(min(instruments, default=""))
        ]
        self.ends = instrument_ends(tapes, until)
        """Per instrument, where its replay ends; the end of a tape surveyed without reading it is
        added when a partition has read it (before the candle step sees the end of the input)."""
        self.batch_size = batch_size
        self.until = until
        self.total_rows = sum(count_rows(Path(path)) for path in paths)
        """Rows of every tape (trades and bad rows), an upper bound of what is read before ``until``."""
        self._built: list[_TapePartition] = []

    def _ended(self, paths: Sequence[Path]) -> Callable[[int, datetime | None], None] | None:
        """What a partition over ``paths`` calls when it has read tape ``i`` to its end ``end``: that
        end counts for the tape's instruments if it was not known when the source was made."""
        if not any(Path(path) in self._unknown for path in paths):
            return None

        def ended(i: int, end: datetime | None) -> None:
            instruments = self._unknown.get(Path(paths[i]), frozenset())
            if end is None:
                return
            for symbol in instruments:
                self.ends[symbol] = max(end, self.ends.get(symbol, end))

        return ended

    @property
    def rows_read(self) -> int:
        """Rows emitted so far by the partitions of this process (trades and rejects)."""
        return sum(part.read for part in self._built)

    def list_parts(self) -> list[str]:
        """The partitions this process reads (all of them, unless ``builds`` says otherwise)."""
        return [f"tapes-{i}" for i in self._local]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _TapePartition:
        index = int(for_part.rsplit("-", 1)[1])
        paths = self.groups[index]
        part = _TapePartition(paths, resume_state or 0, self.batch_size, self.until, self._ended(paths))
        self._built.append(part)
        return part
