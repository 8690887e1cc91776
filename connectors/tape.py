"""Trade tapes in OKX's daily archive CSV format, read lazily as :class:`market.types.Trade`.

Format (tests/data/SOURCES.md): header ``instrument_name,trade_id,side,price,size,created_time`` (newer
OKX archive files append ``source``); ``created_time`` is the trade time in ms since the epoch (UTC),
``side`` the taker side, ``size`` in base currency (SPOT) or contracts (derivatives).

A row is a trade only if it parses and meets ``market.plausibility.trade_problem`` (the static bounds of
storage and exact arithmetic). Two readers:

- :func:`read_arrivals` (replays): every row in file order, which is the tape's arrival order and may
  differ from event-time order (a recording); a bad row becomes a ``Rejected`` and reading goes on.
- :func:`read_tape` (the OKX simulator, archive files): strict, for sorted, trusted archives; a bad or
  out-of-order row raises :class:`TapeError` naming the file and line.

A file that is not a tape at all (missing, bad header, no rows) raises :class:`TapeError` with either.
"""

from __future__ import annotations

import csv
import heapq
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TextIO, TypeVar

from market.plausibility import DEFAULT_LIMITS, INT8_MAX, decimal_problem, trade_problem
from market.types import EPOCH, Rejected, Side, Trade, ms_from_utc, utc_from_ms

EXCHANGE = "okx"
REJECT_SOURCE = "tape"
COLUMNS: tuple[str, ...] = ("instrument_name", "trade_id", "side", "price", "size", "created_time")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")
_EARLIEST_MS = ms_from_utc(DEFAULT_LIMITS.earliest)
_LATEST_MS = ms_from_utc(DEFAULT_LIMITS.latest)

log = logging.getLogger("tcp.tape")

PathLike = str | os.PathLike[str]
T = TypeVar("T")


class TapeError(ValueError):
    """A tape file that does not follow the archive format; the message starts with ``file:line``
    (``file`` alone when it cannot be opened, line 0)."""

    def __init__(self, path: PathLike, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _BadRow:
    """A row that is not an acceptable trade: where it is, what it was, why."""

    line: int
    raw: str
    problem: str


@dataclass(frozen=True, slots=True)
class TapeSummary:
    """What a replay needs to know of a tape before reading it: its instruments and its end."""

    path: str
    instruments: frozenset[str]
    end: datetime | None
    """The latest ``ts_event`` of its valid trades, wherever they are in the file (None: no valid trade)."""
    known_end: bool = True
    """False: ``end`` is not known yet, reading the tape finds it (``connectors.tape_survey``)."""


def _open(path: PathLike) -> tuple[TextIO, _RowParser]:
    """Open a tape and check its header; return it (at its first row) and the parser of its rows."""
    try:
        handle = open(path, newline="", encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise TapeError(path, 0, f"cannot open: {exc.strerror or exc}") from None
    first = handle.readline()
    header = next(csv.reader([first]), None) if first else None
    if header is None:
        handle.close()
        raise TapeError(path, 1, "empty file: expected the header " + ",".join(COLUMNS))
    names = [name.strip().lstrip("\ufeff") for name in header]
    if tuple(names[:6]) != COLUMNS or names[6:] not in ([], ["source"]):
        handle.close()
        shown = ",".join(names)[:200]
        raise TapeError(path, 1, f"header {shown!r} is not {','.join(COLUMNS)}[,source]")
    return handle, _RowParser(len(names) == 7)


def _fields(line: str) -> list[str]:
    """The fields of one line (archive files are never quoted; a quoted line goes through csv, which
    raises ``csv.Error`` on one it cannot read)."""
    text = line.rstrip("\r\n")
    if '"' not in text:
        return text.split(",")
    return next(csv.reader([text]), [])


class _RowParser:
    """Lines of one tape to trades, or why a line is not one. Well-formed rows take a fast path;
    anything odd goes through the strict checks, which name the problem.

    Tapes repeat themselves: consecutive trades often share a millisecond, and prices, sizes and the
    instrument recur. Each field is checked against its bound of ``trade_problem`` once and remembered
    (the time of a ``created_time``, the ``Decimal`` of a price or size text, the instrument id), so
    most rows are built from remembered fields with only the trade id parsed; trades share those
    objects. A row with a field that fails goes the way it always went, which names the problem. The
    memories are bounded (cleared when full)."""

    __slots__ = ("_numbers", "_symbols", "_times", "width", "with_source")

    def __init__(self, with_source: bool) -> None:
        self.with_source = with_source
        self.width = 7 if with_source else 6
        self._times: dict[str, datetime] = {}
        self._numbers: dict[str, Decimal] = {}
        self._symbols: dict[str, str] = {}

    def __call__(self, line: str) -> Trade | str:
        text = line.rstrip("\r\n")
        try:
            row = text.split(",") if '"' not in text else _fields(text)
        except csv.Error as exc:
            return f"unreadable csv: {exc}"
        if len(row) != self.width:
            return self._checked(row)
        symbol, number, side, price_text, size_text, created = row if self.width == 6 else row[:6]
        numbers = self._numbers
        if (
            (side == "buy" or side == "sell")
            and (known := self._symbols.get(symbol) or self._symbol(symbol)) is not None
            and (ts_event := self._times.get(created) or self._time(created)) is not None
            and (price := numbers.get(price_text) or self._number(price_text)) is not None
            and (size := numbers.get(size_text) or self._number(size_text)) is not None
            and number.isascii()
            and number.isdigit()
            and 0 < (trade_id := int(number)) <= INT8_MAX
        ):  # every field within its bound (and count 1 <= trade id): trade_problem has nothing to say
            checked: Side = "buy" if side == "buy" else "sell"
            source = (row[6] or None) if self.with_source else None
            return Trade(
                EXCHANGE, known, trade_id, price, size, checked, ts_event, None, 1, None, source, "tape"
            )
        return self._refused(row)

    def _refused(self, row: list[str]) -> Trade | str:
        """A row of the right width that the fast path did not take: ``trade_problem``'s reason if it
        builds a trade, else the strict checks' reason."""
        symbol, number, side, created = row[0], row[1], row[2], row[5]
        if symbol and (side == "buy" or side == "sell") and number.isascii() and number.isdigit():
            try:
                ts_event = utc_from_ms(int(created)) if created.isascii() and created.isdigit() else None
                if ts_event is not None:
                    checked: Side = "buy" if side == "buy" else "sell"
                    trade = Trade(
                        EXCHANGE, symbol, int(number), Decimal(row[3]), Decimal(row[4]), checked, ts_event
                    )
                    return trade_problem(trade) or replace(
                        trade, source=(row[6] or None) if self.with_source else None, origin="tape"
                    )
            except (OverflowError, ValueError, ArithmeticError):
                pass
        return self._checked(row)

    def _symbol(self, symbol: str) -> str | None:
        """``symbol`` if it is an acceptable instrument id (remembered), else None."""
        limit = DEFAULT_LIMITS.max_symbol_length
        if not symbol or len(symbol) > limit or not symbol.isprintable():
            return None
        return _kept(self._symbols, symbol, symbol, 4096)

    def _number(self, text: str) -> Decimal | None:
        """The ``Decimal`` of ``text`` if it is an acceptable price or size (remembered), else None."""
        try:
            value = Decimal(text)
        except (ValueError, ArithmeticError):
            return None
        if decimal_problem("price", value) is not None:
            return None
        return _kept(self._numbers, text, value, 65536)

    def _time(self, created: str) -> datetime | None:
        """The time of ``created`` if it is plain integer milliseconds within the trade time bounds
        (``TradeLimits.earliest`` .. ``latest``, remembered); else None."""
        if not (created.isascii() and created.isdigit()):
            return None
        ms = int(created)
        if not _EARLIEST_MS <= ms < _LATEST_MS:
            return None
        return _kept(self._times, created, utc_from_ms(ms), 4096)

    def _checked(self, row: list[str]) -> Trade | str:
        if len(row) != self.width:
            return f"{len(row)} fields, expected {self.width}"
        symbol, trade_id, side, price, size, created = row[:6]
        if not symbol:
            return "empty instrument_name"
        if _INTEGER.fullmatch(trade_id) is None:
            return f"trade_id {_short(trade_id)!r} is not an integer"
        if side != "buy" and side != "sell":
            return f"side {_short(side)!r} is neither buy nor sell"
        for name, value in (("price", price), ("size", size)):
            if _DECIMAL.fullmatch(value) is None or not Decimal(value):
                return f"{name} {_short(value)!r} is not a positive decimal"
        if _INTEGER.fullmatch(created) is None:
            return f"created_time {_short(created)!r} is not integer milliseconds"
        try:
            ts_event = utc_from_ms(int(created))
            number = int(trade_id)
        except (OverflowError, ValueError):
            return f"trade_id {_short(trade_id)!r} or created_time {_short(created)!r} is out of range"
        side_: Side = "buy" if side == "buy" else "sell"
        trade = Trade(
            EXCHANGE,
            symbol,
            number,
            Decimal(price),
            Decimal(size),
            side_,
            ts_event,
            source=(row[6] or None) if self.with_source else None,
            origin="tape",
        )
        return trade_problem(trade) or trade


def _kept(memory: dict[str, T], key: str, value: T, limit: int) -> T:
    """Remember ``value`` under ``key`` (forgetting everything first when ``limit`` is reached)."""
    if len(memory) >= limit:
        memory.clear()
    memory[key] = value
    return value


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"


def read_arrivals(
    path: PathLike, ended: Callable[[datetime | None], None] | None = None
) -> Iterator[Trade | Rejected]:
    """The tape's trades in file (arrival) order, and each bad row as a ``Rejected`` (source ``tape``,
    the raw row, ``file:line: problem``); blank lines are skipped. A tape has no receive clock: a reject
    is stamped with the newest trade time read from the file before it (rows before the first trade:
    that trade's time; a tape without any: the epoch), so a replay is deterministic and re-running it
    stores nothing twice. ``ended`` is called with the tape's end (its latest trade time; None: no
    valid trade) once every row is read."""
    handle, parse = _open(path)
    clock: datetime | None = None
    held: list[_BadRow] = []
    rejected = 0
    with handle:
        for number, line in enumerate(handle, start=2):
            trade = parse(line)
            if type(trade) is Trade:
                ts_event = trade.ts_event
                if clock is None:
                    clock = ts_event
                    yield from (_rejected(path, bad, ts_event) for bad in held)
                    held.clear()
                elif ts_event > clock:
                    clock = ts_event
                yield trade
            elif not line.isspace():
                rejected += 1
                bad = _BadRow(number, line.rstrip("\r\n"), str(trade))
                if clock is None:
                    held.append(bad)
                else:
                    yield _rejected(path, bad, clock)
    yield from (_rejected(path, bad, EPOCH) for bad in held)
    if ended is not None:
        ended(clock)
    if rejected:
        log.warning("%s: %d rows rejected (stored in the rejects table)", path, rejected)


def _rejected(path: PathLike, bad: _BadRow, at: datetime) -> Rejected:
    raw = bad.raw.encode("utf-8", "surrogateescape")
    return Rejected(raw, f"{path}:{bad.line}: {bad.problem}", at, REJECT_SOURCE)


def read_tape(path: PathLike) -> Iterator[Trade]:
    """Yield the trades of one sorted archive tape; raise ``TapeError`` at a bad row or where
    (ts_event, trade_id) decreases."""
    handle, parse = _open(path)
    previous: tuple[datetime, int] | None = None
    with handle:
        for number, line in enumerate(handle, start=2):
            trade = parse(line)
            if type(trade) is not Trade:
                if line.isspace():
                    continue
                raise TapeError(path, number, str(trade))
            if previous is not None and trade.order_key < previous:
                raise TapeError(
                    path,
                    number,
                    f"out of order: trade {trade.trade_id} at {trade.ts_event} "
                    f"comes after trade {previous[1]} at {previous[0]}",
                )
            previous = trade.order_key
            yield trade


def merge_tapes(paths: Iterable[PathLike]) -> Iterator[Trade]:
    """Lazily merge several sorted tapes in (ts_event, trade_id) order; ties keep the order of ``paths``."""
    return heapq.merge(*(read_tape(path) for path in paths), key=lambda trade: trade.order_key)


def merge_arrivals(
    paths: Iterable[PathLike], ended: Callable[[int, datetime | None], None] | None = None
) -> Iterator[Trade | Rejected]:
    """Combine tapes in arrival order: each tape keeps its own row order; across tapes, the next item
    is the one whose head is earliest by (ts_event, trade_id) (a reject by its stamp), ties in the order
    of ``paths``. Sorted tapes thus interleave exactly in time order, and one tape is read as it is.
    ``ended(i, end)``: tape ``i`` has been read to its end (:func:`read_arrivals`)."""
    tapes = list(paths)
    reads = [
        read_arrivals(path, None if ended is None else partial(ended, i)) for i, path in enumerate(tapes)
    ]
    if len(reads) == 1:
        return reads[0]
    return heapq.merge(*reads, key=_arrival_key)


def _arrival_key(item: Trade | Rejected) -> tuple[datetime, int]:
    return (item.ts_recv, -1) if isinstance(item, Rejected) else item.order_key


def scan_tape(path: PathLike) -> TapeSummary:
    """One light pass over a tape: its instruments and its end (the latest valid trade time, which for
    a tape in arrival order is not necessarily the last row's). Only the rows at the latest plausible
    time are fully checked; if none of them is a valid trade, the whole tape is read."""
    handle, parse = _open(path)
    width = parse.width
    instruments: set[str] = set()
    latest = -1
    at_latest: list[str] = []
    rows = 0
    with handle:
        for line in handle:
            try:
                row = line.split(",") if '"' not in line else _fields(line)
            except csv.Error:
                row = []
            if len(row) != width:
                rows += not line.isspace()
                continue
            rows += 1
            instruments.add(row[0])
            try:
                ms = int(row[5])  # over-inclusive (int() takes spaces, signs, underscores): checked below
            except ValueError:
                continue
            if ms >= latest and _EARLIEST_MS <= ms < _LATEST_MS:
                if ms > latest:
                    latest = ms
                    at_latest = []
                at_latest.append(line)
    if not rows:
        raise TapeError(path, 2, "tape has no trades")
    candidates = (parse(line) for line in at_latest)
    end = next((t.ts_event for t in candidates if isinstance(t, Trade)), None)
    if end is None and at_latest:  # every row at the latest time is bad: read the whole tape
        handle, parse = _open(path)
        with handle:
            end = max((t.ts_event for t in map(parse, handle) if isinstance(t, Trade)), default=None)
    return TapeSummary(str(path), frozenset(instruments), end)


def tape_end(path: PathLike) -> datetime:
    """The tape's declared end (TIME.md rule 9): the latest time of its valid trades."""
    end = scan_tape(path).end
    if end is None:
        raise TapeError(path, 2, "tape has no valid trades")
    return end


def tape_instruments(path: PathLike) -> set[str]:
    """The instruments present in a tape (rows with the right number of fields)."""
    return set(scan_tape(path).instruments)


__all__ = [
    "COLUMNS",
    "TapeError",
    "TapeSummary",
    "merge_arrivals",
    "merge_tapes",
    "read_arrivals",
    "read_tape",
    "scan_tape",
    "tape_end",
    "tape_instruments",
]
