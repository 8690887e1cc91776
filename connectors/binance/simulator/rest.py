"""The Binance simulator's REST answers: ``/api/v3/ping``, ``time``, ``exchangeInfo``, ``aggTrades``
(newest, by ``fromId``, or by ``startTime``/``endTime``), ``trades`` (newest) and ``klines`` (from the
played trades: ``[open, close)`` intervals, flat ones at the previous close), with Binance's error
shape ``{"code": -1121, "msg": "Invalid symbol."}`` and its request weights reported in
``X-MBX-USED-WEIGHT-1M``. A throttle fault answers every n-th request with 429 and ``Retry-After``.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import orjson

from connectors.binance.simulator.market import History, Market, agg_trade_fields

Query = Mapping[str, list[str]]
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 20, "aggTrades": 4, "trades": 25, "klines": 2}
INTERVALS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "1d": 1440}


class RestError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _int(query: Query, name: str) -> int | None:
    text = _one(query, name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise RestError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(text)


def _history(market: Market, query: Query) -> History:
    symbol = _one(query, "symbol")
    if symbol is None:
        raise RestError(
            400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    history = market.history.get(symbol)
    if history is None:
        raise RestError(400, -1121, "Invalid symbol.")
    return history


def _limit(query: Query) -> int:
    limit = _int(query, "limit")
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise RestError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def agg_trades(market: Market, query: Query) -> object:
    history, limit = _history(market, query), _limit(query)
    from_id, start, end = _int(query, "fromId"), _int(query, "startTime"), _int(query, "endTime")
    if from_id is not None:
        rows = history.from_id(from_id, limit)
    elif start is not None or end is not None:
        lo = bisect.bisect_left(history.times, start or 0)
        hi = bisect.bisect_right(history.times, end if end is not None else 2**63)
        rows = list(zip(history.trades[lo:hi], history.times[lo:hi], strict=True))[:limit]
    else:
        rows = history.newest(limit)
    return [agg_trade_fields(trade, ms) for trade, ms in rows]


def recent_trades(market: Market, query: Query) -> object:
    history, limit = _history(market, query), _limit(query)
    return [
        {
            "id": trade.trade_id,
            "price": format(trade.price, "f"),
            "qty": format(trade.size, "f"),
            "quoteQty": format(trade.price * trade.size, "f"),
            "time": ms,
            "isBuyerMaker": trade.side == "sell",
            "isBestMatch": True,
        }
        for trade, ms in history.newest(limit)
    ]


def klines(market: Market, query: Query) -> object:
    """``[open time, o, h, l, c, volume, close time (last ms), quote volume, trades, taker buy base,
    taker buy quote, "0"]`` per interval from the first played trade's to the clock's (still forming)."""
    history, limit = _history(market, query), _limit(query)
    minutes = INTERVALS.get(_one(query, "interval") or "")
    if minutes is None:
        raise RestError(400, -1120, "Invalid interval.")
    span = minutes * 60_000
    start, end = _int(query, "startTime"), _int(query, "endTime")
    bars: list[list[object]] = []
    previous: Decimal | None = None
    position = 0
    if not history.times:
        return bars
    for open_ms in range(history.times[0] // span * span, history.times[-1] + 1, span):
        stop = bisect.bisect_left(history.times, open_ms + span, position)
        trades = history.trades[position:stop]
        position = stop
        if trades:
            prices = [t.price for t in trades]
            o, h, lo, c = prices[0], max(prices), min(prices), prices[-1]
            previous = c
        else:
            o = h = lo = c = previous  # type: ignore[assignment]
        volume = sum((t.size for t in trades), Decimal(0))
        quote = sum((t.price * t.size for t in trades), Decimal(0))
        taker = [t for t in trades if t.side == "buy"]
        taker_base = sum((t.size for t in taker), Decimal(0))
        taker_quote = sum((t.price * t.size for t in taker), Decimal(0))
        if (start is None or open_ms >= start) and (end is None or open_ms <= end):
            numbers = (o, h, lo, c, volume)
            bars.append([open_ms, *(format(n, "f") for n in numbers), open_ms + span - 1, format(quote, "f"),
                         len(trades), format(taker_base, "f"), format(taker_quote, "f"), "0"])  # fmt: skip
    return bars[:limit] if start is not None else bars[-limit:]


ROUTES: dict[str, Callable[[Market, Query], object]] = {
    "ping": lambda market, query: {},
    "time": lambda market, query: {"serverTime": int(time.time() * 1000)},
    "exchangeInfo": lambda market, query: orjson.Fragment(market.exchange_info(int(time.time() * 1000))),
    "aggTrades": agg_trades,
    "trades": recent_trades,
    "klines": klines,
}


@dataclass
class RestState:
    """Weight used in the current minute, and the throttle fault's count."""

    throttle_every: int = 0
    retry_after: int = 1
    minute: int = 0
    used: int = 0
    requests: int = 0
    throttled: int = 0


def handle(
    market: Market, state: RestState, path: str, query: Query
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Answer one GET: (HTTP status, extra headers, JSON body)."""
    name = path.removeprefix("/api/v3/")
    route = ROUTES.get(name) if path.startswith("/api/v3/") else None
    if route is None:
        return 404, [], orjson.dumps({"code": -1000, "msg": f"Path {path} is not served by the simulator."})
    minute = int(time.time() // 60)
    if minute != state.minute:
        state.minute, state.used = minute, 0
    state.used += WEIGHTS[name]
    state.requests += 1
    headers = [("X-MBX-USED-WEIGHT-1M", str(state.used))]
    if state.throttle_every and state.requests % state.throttle_every == 0:
        state.throttled += 1
        headers.append(("Retry-After", str(state.retry_after)))
        body = orjson.dumps({"code": -1003, "msg": "Too much request weight used; please use the websocket."})
        return 429, headers, body
    try:
        return 200, headers, orjson.dumps(route(market, query))
    except RestError as exc:
        return exc.status, headers, orjson.dumps({"code": exc.code, "msg": exc.msg})
