"""The named reads of an export (``python3 tcp.py export``, docs/export.md): a series' trades in keyset
pages, and the first and last time of a series' candles or trades in a range.

Candles are read page by page with ``sql.statements.CANDLES_BETWEEN`` (the public candle relations the
dashboard and the backtest read: ``time`` is the close); a page of trades continues after the last
``(time, trade_id)`` of the page before, which the ``trades_key`` index (exchange, symbol, time,
trade_id) serves directly, so every page costs the same however far into the range it is.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, func, select, tuple_

from sql.schema import CANDLES, trades
from sql.statements import Statement

TRADE_COLUMNS: tuple[str, ...] = tuple(c.name for c in trades.columns if c.name != "ingested_at")
"""The columns a trade export holds: every column of ``trades`` but the bookkeeping ``ingested_at``."""


def _series(relation: Any) -> list[Any]:
    return [relation.c.exchange == bindparam("exchange"), relation.c.symbol == bindparam("symbol")]


@cache
def trade_page(after: bool) -> Statement:
    """At most ``limit`` trades of a series with ``time`` in ``[start, end)``, in (time, trade id) order;
    with ``after``, only those after (``after_time``, ``after_id``)."""
    t = trades
    conditions = [*_series(t), t.c.time >= bindparam("start"), t.c.time < bindparam("end")]
    if after:
        conditions.append(
            tuple_(t.c.time, t.c.trade_id) > tuple_(bindparam("after_time"), bindparam("after_id"))
        )
    return Statement(
        select(*(t.c[name] for name in TRADE_COLUMNS))
        .where(*conditions)
        .order_by(t.c.time, t.c.trade_id)
        .limit(bindparam("limit"))
    )


TRADE_SPAN = Statement(
    select(func.min(trades.c.time), func.max(trades.c.time)).where(
        *_series(trades), trades.c.time >= bindparam("start"), trades.c.time < bindparam("end")
    )
)
"""The first and last ``time`` of a series' trades in ``[start, end)`` (NULLs when there is none)."""


def _candle_span(timeframe: str) -> Statement:
    c = CANDLES[timeframe]
    return Statement(
        select(func.min(c.c.time), func.max(c.c.time)).where(
            *_series(c), c.c.time > bindparam("start"), c.c.time <= bindparam("end")
        )
    )


CANDLE_SPAN = {timeframe: _candle_span(timeframe) for timeframe in CANDLES}
"""The first and last close of a series' candles closing in ``(start, end]``; by timeframe."""
