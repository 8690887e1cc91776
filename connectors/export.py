"""Reading a stored series for an export (``python3 tcp.py export``, docs/export.md) in keyset pages.

Candles come from the public candle relation of their timeframe, as the dashboard and the backtest read
them (``sql.statements.CANDLES_BETWEEN``: ``time`` is the close); trades from ``trades`` in (time, trade
id) order, late ones included (they are stored trades; ``late_trades`` says which). Each page is one
query continuing after the last row of the page before, on one autocommit connection: no transaction
or cursor stays open for the length of an export, and only one page is held at a time. The range is
fixed when the export starts (its last row then), so rows written meanwhile do not make it grow.

Numbers come back as PostgreSQL's own text of the ``numeric`` (exact, with the stored scale: ``23.00000000``
stays so), times as aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.string import TextLoader
from sqlalchemy import TIMESTAMP, BigInteger, Integer, Numeric, Text

from market.timeframes import timeframe as lookup_timeframe
from sql.export_statements import CANDLE_SPAN, TRADE_COLUMNS, TRADE_SPAN, trade_page
from sql.schema import CANDLES, trades
from sql.statements import CANDLE_COLUMNS, CANDLES_BETWEEN, SYMBOLS

PAGE_ROWS = 10_000
"""Rows per page read: 10,000 took less CPU and 60 to 100 MB less peak RSS than 50,000
(bench/bench_export.py)."""
FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class ExportColumn:
    """A column of an export: its name, kind (``text``, ``numeric``, ``int32``, ``int64`` or ``time``)
    and whether it may be NULL."""

    name: str
    kind: str
    nullable: bool


def _kind(sql_type: Any) -> str:
    for kind, types in (("int64", BigInteger), ("int32", Integer), ("numeric", Numeric), ("time", TIMESTAMP)):
        if isinstance(sql_type, types):
            return kind
    assert isinstance(sql_type, Text), sql_type
    return "text"


@dataclass(frozen=True)
class ExportRange:
    """What an export covers: a series' trades (``timeframe`` None) with ``start <= time < end``, or its
    candles of ``timeframe`` lying wholly in ``[start, end)`` (open at or after ``start``, close at or
    before ``end``: the candles of exactly those trades). A missing bound is the series' first or last."""

    exchange: str
    symbol: str
    timeframe: str | None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def what(self) -> str:
        return "trades" if self.timeframe is None else f"{self.timeframe} candles"

    def columns(self) -> tuple[ExportColumn, ...]:
        relation, names = (
            (trades, TRADE_COLUMNS) if self.timeframe is None else (CANDLES["1m"], CANDLE_COLUMNS)
        )
        return tuple(ExportColumn(n, _kind(relation.c[n].type), bool(relation.c[n].nullable)) for n in names)

    def bounds(self) -> dict[str, datetime]:
        """The range as the reads' ``start`` and ``end`` parameters: on ``time`` for trades, on the close
        ``(start, end]`` for candles (a candle opening at or after ``start`` closes after
        ``start + timeframe - 1 µs``)."""
        end = self.end or FAR_FUTURE
        if self.timeframe is None:
            return {"start": self.start or FAR_PAST, "end": end}
        length = lookup_timeframe(self.timeframe).length
        return {"start": self.start + length - MICROSECOND if self.start else FAR_PAST, "end": end}


@dataclass(frozen=True)
class Span:
    """The first and last ``time`` of the rows an export holds."""

    first: datetime
    last: datetime


class SeriesReader:
    """Reads one :class:`ExportRange` from the database at ``url`` in pages of ``page_rows``; a context
    manager holding one connection."""

    def __init__(self, url: str, series: ExportRange, page_rows: int = PAGE_ROWS) -> None:
        self.series = series
        self.page_rows = page_rows
        self.columns = series.columns()
        self.reached: datetime | None = None
        """The ``time`` of the last row read so far."""
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.adapters.register_loader("numeric", TextLoader)  # the stored text, not a Decimal
        self._conn.execute("SET TIME ZONE 'UTC'")

    def __enter__(self) -> SeriesReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def span(self, whole: bool = False) -> Span | None:
        """The first and last time of the rows in the range (of the whole series with ``whole``); None
        when there is none."""
        s = self.series
        statement = TRADE_SPAN if s.timeframe is None else CANDLE_SPAN[s.timeframe]
        bounds = {"start": FAR_PAST, "end": FAR_FUTURE} if whole else s.bounds()
        row = self._conn.execute(
            statement.text, {"exchange": s.exchange, "symbol": s.symbol, **bounds}
        ).fetchone()
        return None if row is None or row[0] is None else Span(row[0], row[1])

    def symbols(self) -> list[str]:
        """The symbols of the range's exchange that have stored candles."""
        return [row[0] for row in self._conn.execute(SYMBOLS.text, {"exchange": self.series.exchange})]

    def pages(self, span: Span) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of the range up to ``span.last`` (what :meth:`span` found), oldest first, a page at a
        time; the columns are :attr:`columns`."""
        s = self.series
        params: dict[str, Any] = {"exchange": s.exchange, "symbol": s.symbol, "limit": self.page_rows}
        params |= s.bounds()
        if s.timeframe is None:
            params["end"] = min(params["end"], span.last + MICROSECOND)
            yield from self._trade_pages(params)
        else:
            params["end"] = span.last
            yield from self._candle_pages(params, CANDLES_BETWEEN[s.timeframe].text)

    def _candle_pages(self, params: dict[str, Any], query: str) -> Iterator[list[tuple[Any, ...]]]:
        time = CANDLE_COLUMNS.index("time")
        while rows := self._conn.execute(query, params).fetchall():
            self.reached = params["start"] = rows[-1][time]
            yield rows
            if len(rows) < self.page_rows:
                return

    def _trade_pages(self, params: dict[str, Any]) -> Iterator[list[tuple[Any, ...]]]:
        time, trade_id = TRADE_COLUMNS.index("time"), TRADE_COLUMNS.index("trade_id")
        query = trade_page(after=False).text
        while rows := self._conn.execute(query, params).fetchall():
            last = rows[-1]
            self.reached = last[time]
            # the next page: after the last (time, trade id); ``start`` too, so that TimescaleDB skips
            # the chunks before it
            params |= {"start": last[time], "after_time": last[time], "after_id": last[trade_id]}
            query = trade_page(after=True).text
            yield rows
            if len(rows) < self.page_rows:
                return
