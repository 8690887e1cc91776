"""The Binance simulator's exchange state: the trades played so far, who follows which stream, and the
frames Binance sends (events as documented in Binance's "WebSocket Streams"; REST answers as in its
"Market data endpoints", see docs/binance.md).

A tape row is one aggregate trade: its ``trade_id`` is the aggregate id ``a``; ``f`` = ``l`` = ``a``
(the tapes keep no fill ids). ``@trade`` streams carry the same rows as trades (``t`` = ``a``).
Times are epoch milliseconds as published (tape time + ``offset_ms``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson

from connectors.binance.wire import exchange_symbol
from market.types import Trade, ms_from_utc


class Subscriber(Protocol):
    def push(self, stream: str, event: dict[str, Any]) -> None: ...


def agg_trade_fields(trade: Trade, ms: int) -> dict[str, Any]:
    """The REST ``aggTrades`` item of a trade published at ``ms``."""
    return {
        "a": trade.trade_id,
        "p": _text(trade.price),
        "q": _text(trade.size),
        "f": trade.trade_id,
        "l": trade.trade_id,
        "T": ms,
        "m": trade.side == "sell",
        "M": True,
    }


def agg_trade_event(trade: Trade, symbol: str, ms: int) -> dict[str, Any]:
    """The ``<symbol>@aggTrade`` event of a trade published at ``ms`` (event time = trade time)."""
    return {"e": "aggTrade", "E": ms, "s": symbol, **agg_trade_fields(trade, ms)}


def trade_event(trade: Trade, symbol: str, ms: int) -> dict[str, Any]:
    """The ``<symbol>@trade`` event of a tape row (buyer and seller order ids are not known: 0)."""
    return {
        "e": "trade",
        "E": ms,
        "s": symbol,
        "t": trade.trade_id,
        "p": _text(trade.price),
        "q": _text(trade.size),
        "T": ms,
        "m": trade.side == "sell",
        "M": True,
    }


def _text(number: Decimal) -> str:
    return format(number, "f")


@dataclass(slots=True)
class History:
    """Played trades of one symbol in play order, with their ids and published times."""

    trades: list[Trade] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)

    def from_id(self, trade_id: int, limit: int) -> list[tuple[Trade, int]]:
        start = bisect.bisect_left(self.ids, trade_id)
        return list(zip(self.trades[start : start + limit], self.times[start : start + limit], strict=True))

    def newest(self, limit: int) -> list[tuple[Trade, int]]:
        start = max(0, len(self.trades) - limit)
        return list(zip(self.trades[start:], self.times[start:], strict=True))


class Market:
    """What the simulated exchange knows at the replay clock; publishes each played trade."""

    def __init__(self, instruments: Iterable[str], offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        self.instruments = {exchange_symbol(inst): inst for inst in instruments}
        self.history = {symbol: History() for symbol in self.instruments}
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.clock_ms: int | None = None
        self.played = 0
        self.pushed = 0
        self.drop_every = 0
        """Fault: every n-th trade is kept in the REST history but never pushed (a hole in the stream)."""
        self.poison_every = 0
        """Fault: after every n-th trade's event, an ``aggTrade`` event with an unreadable price."""
        self.poisoned = 0

    def subscribe(self, stream: str, subscriber: Subscriber) -> None:
        self.subscribers.setdefault(stream, set()).add(subscriber)

    def unsubscribe(self, stream: str, subscriber: Subscriber) -> None:
        followers = self.subscribers.get(stream)
        if followers is not None:
            followers.discard(subscriber)
            if not followers:
                del self.subscribers[stream]

    def play(self, trade: Trade) -> None:
        symbol = exchange_symbol(trade.symbol)
        ms = ms_from_utc(trade.ts_event) + self.offset_ms
        history = self.history[symbol]
        history.trades.append(trade)
        history.ids.append(trade.trade_id)
        history.times.append(ms)
        self.clock_ms = ms
        self.played += 1
        if self.drop_every and self.played % self.drop_every == 0:
            return
        lower = symbol.lower()
        for kind, event in (("aggTrade", agg_trade_event), ("trade", trade_event)):
            followers = self.subscribers.get(f"{lower}@{kind}")
            if followers:
                payload = event(trade, symbol, ms)
                for subscriber in tuple(followers):
                    subscriber.push(f"{lower}@{kind}", payload)
                    self.pushed += 1
        if self.poison_every and self.played % self.poison_every == 0:
            followers = self.subscribers.get(f"{lower}@aggTrade")
            poison = {**agg_trade_event(trade, symbol, ms), "p": "poison"}
            for subscriber in tuple(followers or ()):
                subscriber.push(f"{lower}@aggTrade", poison)
                self.poisoned += 1

    def exchange_info(self, server_ms: int) -> bytes:
        symbols = [
            {
                "symbol": symbol,
                "status": "TRADING",
                "baseAsset": inst.split("-")[0],
                "baseAssetPrecision": 8,
                "quoteAsset": inst.split("-")[1],
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [],
                "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
            }
            for symbol, inst in sorted(self.instruments.items())
        ]
        limits = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ]
        info = {
            "timezone": "UTC",
            "serverTime": server_ms,
            "rateLimits": limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }
        return orjson.dumps(info)
