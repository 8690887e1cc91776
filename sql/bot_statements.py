"""The named reads of the paper-trading bots (docs/bots.md), for the dashboard's Bots page and
``python3 tcp.py bots show``.

Each is a :class:`BotRead`: the PostgreSQL text with psycopg's ``%(name)s`` placeholders (every value a
bound parameter) and the names it binds. Run one on a psycopg connection:
``conn.execute(BOT_FILLS_BETWEEN.text, {"bot_id": 3, "start": None, "end": None})``. A bound of ``None``
means no bound. Times are UTC; an equity point's ``time`` is the close of the candle it was marked at, a
fill's ``time`` the open of the candle whose open filled it.

- :data:`BOT_SUMMARY`: every bot, by name: ``bot_id, name, exchange, symbol, timeframe, state, strategy,
  config`` (the stored configuration), its last equity point ``time, close, cash, position, equity``
  (all ``None`` before its first candle), ``start_cash`` (the account's cash), ``pnl`` (equity minus
  start cash), ``pnl_pct``, ``exposure`` (``|position * close| / equity``) and ``fills`` (how many).
- :data:`BOT_EQUITY`: one bot's newest ``limit`` equity points, oldest first.
- :data:`BOT_FILLS`: one bot's fills at or after ``since`` (``None``: all), oldest first.
- :data:`BOT_EQUITY_BETWEEN`, :data:`BOT_FILLS_BETWEEN`: one bot's equity points and fills with ``time``
  in ``[start, end]``, oldest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class BotRead:
    """A named read: its psycopg text and the names of its bound parameters."""

    name: str
    text: str
    parameters: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", frozenset(_PLACEHOLDER.findall(self.text)))


_EQUITY_COLUMNS = "time, close, cash, position, equity"
_FILL_COLUMNS = "time, seq, signal_time, side, price, quantity, fee"

BOT_SUMMARY = BotRead(
    "bot_summary",
    """
SELECT b.bot_id, b.name, b.exchange, b.symbol, b.timeframe, b.state, b.config ->> 'strategy' AS strategy,
       b.config, e.time, e.close, e.cash, e.position, e.equity, a.start_cash,
       e.equity - a.start_cash AS pnl,
       (e.equity - a.start_cash) / a.start_cash * 100 AS pnl_pct,
       abs(e.position * e.close) / nullif(e.equity, 0) AS exposure,
       (SELECT count(*) FROM bot_fills f WHERE f.bot_id = b.bot_id) AS fills
FROM bots b
CROSS JOIN LATERAL (SELECT coalesce((b.config -> 'account' ->> 'cash')::float8, 10000) AS start_cash) a
LEFT JOIN LATERAL (
    SELECT q.time, q.close, q.cash, q.position, q.equity FROM bot_equity q
    WHERE q.bot_id = b.bot_id ORDER BY q.time DESC LIMIT 1
) e ON true
ORDER BY b.name
""",
)

BOT_EQUITY = BotRead(
    "bot_equity",
    f"""
SELECT {_EQUITY_COLUMNS} FROM (
    SELECT {_EQUITY_COLUMNS} FROM bot_equity WHERE bot_id = %(bot_id)s ORDER BY time DESC LIMIT %(limit)s
) newest
ORDER BY time
""",
)

BOT_FILLS = BotRead(
    "bot_fills",
    f"""
SELECT {_FILL_COLUMNS} FROM bot_fills
WHERE bot_id = %(bot_id)s AND (%(since)s::timestamptz IS NULL OR time >= %(since)s::timestamptz)
ORDER BY time, seq
""",
)

BOT_EQUITY_BETWEEN = BotRead(
    "bot_equity_between",
    f"""
SELECT {_EQUITY_COLUMNS} FROM bot_equity
WHERE bot_id = %(bot_id)s
  AND (%(start)s::timestamptz IS NULL OR time >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR time <= %(end)s::timestamptz)
ORDER BY time
""",
)

BOT_FILLS_BETWEEN = BotRead(
    "bot_fills_between",
    f"""
SELECT {_FILL_COLUMNS} FROM bot_fills
WHERE bot_id = %(bot_id)s
  AND (%(start)s::timestamptz IS NULL OR time >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR time <= %(end)s::timestamptz)
ORDER BY time, seq
""",
)

READS: tuple[BotRead, ...] = (BOT_SUMMARY, BOT_EQUITY, BOT_FILLS, BOT_EQUITY_BETWEEN, BOT_FILLS_BETWEEN)
