"""Replaying a recorded live OKX session as a Bytewax source (docs/reliability.md, "Recorded sessions").

Each recorded partition (one websocket connection of the live source) is one partition here: its files
are read in order, each input rebuilt (frames parsed again by the live parser) and fed to a fresh
:class:`market.sequencing.Sequencer` built as the live one was, from the header. The requests it returns
are not performed: their answers are the next recorded inputs, checked against them. Its items
(``Trade``, ``Rejected``, ``Gap``, ``FeedState``) leave in the order the live source handed them over,
up to as many as the live dataflow took, so the same dataflow makes the same rows.

Delivery guarantee: exactly once per execution; on resume from a Bytewax snapshot a partition feeds its
sequencer from the start again and skips the items it had already emitted (its resume state is that
count), so nothing is emitted twice.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.okx.session_format import SUFFIX, SessionError, SessionHeader, SessionLines, decode_event
from market.sequencing import (
    Backfilled,
    Event,
    FetchBackfill,
    FetchLatest,
    Gap,
    Latest,
    Position,
    Request,
)
from market.types import FeedState, Rejected, Trade

log = logging.getLogger(__name__)

SessionItem = Trade | Rejected | Gap | FeedState


@dataclass(frozen=True)
class SessionPart:
    """One recorded partition: its header, its files in order, and how many items the live dataflow
    took (None when the recording has no end, e.g. the process was killed: everything is replayed)."""

    header: SessionHeader
    files: tuple[Path, ...]
    taken: int | None

    def events(self) -> Iterator[tuple[str, Event]]:
        """Each recorded input with where it was read (``file:line``)."""
        for index, path in enumerate(self.files):
            lines = SessionLines(path)
            for number, line in lines:
                if number == 1 or (isinstance(line, dict) and line.get("e") == "end"):
                    continue  # the header; the end of what the dataflow took
                where = f"{path}:{number}"
                try:
                    yield where, decode_event(line)
                except (KeyError, TypeError, ValueError, AttributeError) as error:
                    raise SessionError(
                        f"{where}: unreadable input ({type(error).__name__}: {error})"
                    ) from None
            if lines.ended_early is not None:
                if index < len(self.files) - 1:
                    raise SessionError(
                        f"{path}: {lines.ended_early}, yet later files of the partition follow"
                    )
                log.warning("%s: %s; replaying up to there", path, lines.ended_early)


def _files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob(f"*{SUFFIX}")))
        elif path.is_file():
            files.append(path)
        else:
            raise SessionError(f"{path}: no such file or directory")
    if not files:
        raise SessionError(f"no session files (*{SUFFIX}) in {', '.join(map(str, paths))}")
    return files


def _taken(path: Path) -> int | None:
    """What the end line of a partition's last file says the live dataflow took."""
    for _, line in SessionLines(path):
        if isinstance(line, dict) and line.get("e") == "end":
            return int(line["taken"])
    return None


def read_session(paths: Sequence[Path]) -> list[SessionPart]:
    """The recorded partitions of one session, from its directory or files; raises
    :class:`SessionError` naming the file when they cannot be replayed."""
    found: dict[str, list[tuple[int, Path, SessionHeader]]] = {}
    for path in _files(paths):
        with closing(iter(SessionLines(path))) as lines:
            first = next(lines, None)
        if first is None:
            log.warning("%s holds no complete line (its writer was stopped at once): skipped", path)
            continue
        header, number = SessionHeader.parse(first[1], str(path))
        found.setdefault(header.partition, []).append((number, path, header))
    sessions = sorted({entry[2].session for entries in found.values() for entry in entries})
    if len(sessions) > 1:
        raise SessionError(
            f"the files belong to {len(sessions)} sessions ({', '.join(sessions)}): replay one session at a "
            "time, in the order they ran"
        )
    parts: list[SessionPart] = []
    for partition, entries in sorted(found.items()):
        entries.sort(key=lambda entry: entry[0])
        numbers = [entry[0] for entry in entries]
        if numbers != list(range(len(entries))):
            raise SessionError(
                f"partition {partition}: files numbered {numbers}, not 0..{len(entries) - 1} (a file is "
                "missing, perhaps deleted by keep_files): a session replays only from its first file on"
            )
        header = entries[0][2]
        for _, path, other in entries[1:]:
            if other != header:
                raise SessionError(f"{path}: its header differs from that of {entries[0][1]}")
        files = tuple(entry[1] for entry in entries)
        parts.append(SessionPart(header, files, _taken(files[-1])))
    if not parts:
        raise SessionError(f"no session file with a header in {', '.join(map(str, paths))}")
    return parts


class _SessionPartition(StatefulSourcePartition[SessionItem, int]):
    def __init__(self, part: SessionPart, skip: int, batch_size: int) -> None:
        self._events = part.events()
        self._sequencer = part.header.sequencer()
        self._asked: deque[Request] = deque()
        self._limit = part.taken
        self._skip = skip
        self._produced = 0
        self._batch_size = batch_size
        self._done = False

    def _check(self, where: str, event: Event) -> None:
        """An answer must be to the oldest request outstanding, as the live stream performs them."""
        if not isinstance(event, Latest | Backfilled):
            return
        expected = FetchLatest(event.symbol) if isinstance(event, Latest) else event.request
        asked = self._asked.popleft() if self._asked else None
        if asked != expected:
            raise SessionError(
                f"{where}: the recording answers {expected} where this sequencer asked for {asked}: it was "
                "recorded under other sequencing rules"
            )

    def next_batch(self) -> list[SessionItem]:
        batch: list[SessionItem] = []
        while len(batch) < self._batch_size and not self._done:
            entry = next(self._events, None)
            if entry is None:
                self._done = True
                break
            self._check(*entry)
            for action in self._sequencer.feed(entry[1]):
                if isinstance(action, FetchLatest | FetchBackfill):
                    self._asked.append(action)
                elif self._limit is not None and self._produced >= self._limit:
                    self._done = True  # the live dataflow took no more
                    break
                else:
                    if self._produced >= self._skip:
                        batch.append(action)
                    self._produced += 1
        if self._done and not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> int:
        return self._produced


class SessionSource(FixedPartitionedSource[SessionItem, int]):
    """The items a live OKX source handed to the dataflow in a recorded session, rebuilt from the
    recording (its session directory, or its files); raises :class:`SessionError` at construction
    when they cannot be replayed."""

    def __init__(self, paths: Sequence[Path], batch_size: int = 1000) -> None:
        self.parts = {part.header.partition: part for part in read_session(paths)}
        self.batch_size = batch_size

    @property
    def header(self) -> SessionHeader:
        """The first partition's header (the session, exchange and dataflow settings are common)."""
        return next(iter(self.parts.values())).header

    @property
    def instruments(self) -> list[str]:
        return [symbol for part in self.parts.values() for symbol in part.header.instruments]

    @property
    def positions(self) -> dict[str, Position]:
        """Where each instrument started in the live run."""
        return {symbol: p for part in self.parts.values() for symbol, p in part.header.positions.items()}

    def list_parts(self) -> list[str]:
        return list(self.parts)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _SessionPartition:
        return _SessionPartition(self.parts[for_part], resume_state or 0, self.batch_size)
