"""Trade tapes in OKX's daily archive CSV format, read lazily as :class:`market.types.Trade`.

Format (tests/data/SOURCES.md): header ``instrument_name,trade_id,side,price,size,created_time`` (newer
OKX archive files append ``source``); ``created_time`` is the trade time in ms since the epoch (UTC),
``side`` the taker side, ``size`` in base currency (SPOT) or contracts (derivatives).

Tapes are trusted inputs: a bad row is a broken file, so it raises :class:`TapeError` naming the file and
line, unlike a websocket frame which becomes a ``Rejected``. Within one file rows must be in
(``created_time``, ``trade_id``) order, which :func:`merge_tapes` relies on.
"""

from __future__ import annotations

import csv
import heapq
import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal

from market.types import Side, Trade, utc_from_ms

EXCHANGE = "okx"
COLUMNS: tuple[str, ...] = ("instrument_name", "trade_id", "side", "price", "size", "created_time")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")

PathLike = str | os.PathLike[str]


class TapeError(ValueError):
    """A tape file that does not follow the archive format; the message starts with ``file:line``."""

    def __init__(self, path: PathLike, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


def _check_header(path: PathLike, header: list[str] | None) -> bool:
    """Validate the header; return whether a ``source`` column follows the six standard ones."""
    if header is None:
        raise TapeError(path, 1, "empty file: expected the header " + ",".join(COLUMNS))
    names = [name.strip().lstrip("\ufeff") for name in header]
    if tuple(names[:6]) != COLUMNS or names[6:] not in ([], ["source"]):
        raise TapeError(path, 1, f"header {','.join(names)!r} is not {','.join(COLUMNS)}[,source]")
    return len(names) == 7


def _row_trade(path: PathLike, line: int, row: list[str], with_source: bool) -> Trade:
    """The trade of one row. Well-formed rows take a fast path; anything odd goes through the strict
    checks, which raise naming the problem."""
    try:
        if len(row) == (7 if with_source else 6) and row[0] and (row[2] == "buy" or row[2] == "sell"):
            price = Decimal(row[3])
            size = Decimal(row[4])
            if price > 0 and size > 0 and price.is_finite() and size.is_finite() and row[1].isdigit() \
                    and row[5].isdigit():
                return Trade(EXCHANGE, row[0], int(row[1]), price, size, row[2],  # type: ignore[arg-type]
                             utc_from_ms(int(row[5])), None, 1, None,
                             (row[6] or None) if with_source else None, "tape")
    except (ValueError, ArithmeticError):
        pass
    return _checked_row_trade(path, line, row, with_source)


def _checked_row_trade(path: PathLike, line: int, row: list[str], with_source: bool) -> Trade:
    width = 7 if with_source else 6
    if len(row) != width:
        raise TapeError(path, line, f"{len(row)} fields, expected {width}")
    symbol, trade_id, side, price, size, created = row[:6]
    if not symbol:
        raise TapeError(path, line, "empty instrument_name")
    if _INTEGER.fullmatch(trade_id) is None:
        raise TapeError(path, line, f"trade_id {trade_id!r} is not an integer")
    if side != "buy" and side != "sell":
        raise TapeError(path, line, f"side {side!r} is neither buy nor sell")
    for name, value in (("price", price), ("size", size)):
        if _DECIMAL.fullmatch(value) is None or not Decimal(value):
            raise TapeError(path, line, f"{name} {value!r} is not a positive decimal")
    if _INTEGER.fullmatch(created) is None:
        raise TapeError(path, line, f"created_time {created!r} is not integer milliseconds")
    side_: Side = "buy" if side == "buy" else "sell"
    return Trade(
        exchange=EXCHANGE,
        symbol=symbol,
        trade_id=int(trade_id),
        price=Decimal(price),
        size=Decimal(size),
        side=side_,
        ts_event=utc_from_ms(int(created)),
        source=(row[6] or None) if with_source else None,
        origin="tape",
    )


def read_tape(path: PathLike) -> Iterator[Trade]:
    """Yield the trades of one tape file in file order, checking (ts_event, trade_id) never decreases."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        with_source = _check_header(path, next(reader, None))
        previous: tuple[datetime, int] | None = None
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            trade = _row_trade(path, line, row, with_source)
            if previous is not None and trade.order_key < previous:
                raise TapeError(path, line, f"out of order: trade {trade.trade_id} at {trade.ts_event} "
                                            f"comes after trade {previous[1]} at {previous[0]}")
            previous = trade.order_key
            yield trade


def merge_tapes(paths: Iterable[PathLike]) -> Iterator[Trade]:
    """Lazily merge several tapes in (ts_event, trade_id) order; ties keep the order of ``paths``."""
    return heapq.merge(*(read_tape(path) for path in paths), key=lambda trade: trade.order_key)


def tape_end(path: PathLike) -> datetime:
    """The tape's declared end (TIME.md rule 9): the time of its last trade (read from the file's tail)."""
    with open(path, newline="", encoding="utf-8") as handle:
        with_source = _check_header(path, next(csv.reader(handle), None))
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            step = min(1 << 14, position)
            position -= step
            handle.seek(position)
            tail = handle.read(step) + tail
            if len([line for line in tail.splitlines() if line.strip()]) >= 2:
                break
    lines = [line for line in tail.splitlines() if line.strip()]
    if position == 0 and len(lines) < 2:
        raise TapeError(path, 1, "tape has no trades")
    row = next(csv.reader([lines[-1].decode("utf-8")]))
    try:
        return _row_trade(path, 0, row, with_source).ts_event
    except TapeError as exc:
        with open(path, "rb") as handle:
            line = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 16), b""))
        raise TapeError(path, line, exc.problem) from None


def tape_instruments(path: PathLike) -> set[str]:
    """The instruments present in a tape: one pass over its first column (rows are not validated
    here; reading the tape does that)."""
    with open(path, newline="", encoding="utf-8") as handle:
        _check_header(path, next(csv.reader([handle.readline()]), None))
        found = {line.split(",", 1)[0] for line in handle if line.strip()}
    if not found:
        raise TapeError(path, 2, "tape has no trades")
    return {name.strip('"') for name in found}


__all__ = ["COLUMNS", "TapeError", "merge_tapes", "read_tape", "tape_end", "tape_instruments"]
