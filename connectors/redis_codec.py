"""The wire format of the live fan-out (docs/redis.md): channel names, each item's JSON payload, and
``encode``/``decode``. Pure (no I/O); shared by the publisher (connectors/redis_fanout.py), the reader
(connectors/redis_reader.py) and the ``collector_health`` table (connectors/health_table.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from market.bots import BotUpdate
from market.health import CollectorHealth
from market.provisional import ProvisionalCandle
from market.types import Candle, CandleBody, IndicatorValue, Signal
from market.windowing import LateTrade

LiveItem = Candle | ProvisionalCandle | IndicatorValue | Signal | LateTrade | CollectorHealth | BotUpdate
"""What the live fan-out publishes."""
KINDS = ("candle", "provisional", "indicator", "signal", "late", "health", "bot")
HEALTH_CHANNEL = "tcp:health"
ALL_PATTERNS = ("tcp:*",)
_TIME_FIELDS = frozenset(
    {
        "time",
        "open_time",
        "as_of",
        "received_at",
        "candle_close",
        "watermark",
        "last_message_time",
        "status_since",
        "last_restart_time",
        "last_check_time",
    }
)
_DECIMAL_FIELDS = frozenset(
    {"open", "high", "low", "close", "volume", "quote_volume", "vwap", "price", "size"}
)

Message = tuple[str, str, dict[str, Any]]
"""``(kind, channel, payload)``."""


def candle_channel(exchange: str, symbol: str, timeframe: str) -> str:
    return f"tcp:candles:{exchange}:{symbol}:{timeframe}"


def provisional_channel(exchange: str, symbol: str, timeframe: str) -> str:
    return f"tcp:provisional:{exchange}:{symbol}:{timeframe}"


def indicator_channel(exchange: str, symbol: str, timeframe: str) -> str:
    return f"tcp:indicators:{exchange}:{symbol}:{timeframe}"


def signal_channel(exchange: str, symbol: str, timeframe: str) -> str:
    return f"tcp:signals:{exchange}:{symbol}:{timeframe}"


def late_channel(exchange: str, symbol: str) -> str:
    return f"tcp:late:{exchange}:{symbol}"


def bot_channel(bot: str) -> str:
    return f"tcp:bots:{bot}"


def health_latest_key(collector: str) -> str:
    return f"tcp:health:latest:{collector}"


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("naive datetime: every time in this project is timezone-aware UTC")
    return ts.astimezone(UTC)


def _opt_utc(ts: datetime | None) -> datetime | None:
    return None if ts is None else _utc(ts)


def _dec(d: Decimal | None) -> str | None:
    return None if d is None else format(d, "f")


def _body(c: CandleBody) -> dict[str, Any]:
    return {
        "exchange": c.exchange,
        "symbol": c.symbol,
        "timeframe": c.timeframe,
        "time": _utc(c.close_time),
        "open_time": _utc(c.open_time),
        "open": _dec(c.open),
        "high": _dec(c.high),
        "low": _dec(c.low),
        "close": _dec(c.close),
        "volume": _dec(c.volume),
        "quote_volume": _dec(c.quote_volume),
        "trade_count": c.trade_count,
        "vwap": _dec(c.vwap),
    }


def candle_message(c: Candle) -> Message:
    payload = {
        "kind": "candle",
        **_body(c),
        "provisional": False,
        "first_trade_id": c.first_trade_id,
        "last_trade_id": c.last_trade_id,
    }
    return "candle", candle_channel(c.exchange, c.symbol, c.timeframe), payload


def provisional_message(p: ProvisionalCandle) -> Message:
    payload = {"kind": "provisional", **_body(p), "provisional": True, "as_of": _utc(p.as_of)}
    return "provisional", provisional_channel(p.exchange, p.symbol, p.timeframe), payload


def _series(kind: str, item: IndicatorValue | Signal) -> dict[str, Any]:
    """The head of a value stamped on a series' candle close."""
    return {
        "kind": kind,
        "exchange": item.exchange,
        "symbol": item.symbol,
        "timeframe": item.timeframe,
        "time": _utc(item.time),
    }


def indicator_message(v: IndicatorValue) -> Message:
    payload = {**_series("indicator", v), "indicator": v.indicator, "values": dict(v.values)}
    return "indicator", indicator_channel(v.exchange, v.symbol, v.timeframe), payload


def signal_message(s: Signal) -> Message:
    payload = {
        **_series("signal", s),
        "strategy": s.strategy,
        "action": s.action,
        "reason": s.reason,
        "values": dict(s.values),
    }
    return "signal", signal_channel(s.exchange, s.symbol, s.timeframe), payload


def late_message(item: LateTrade) -> Message:
    t = item.trade
    payload = {
        "kind": "late",
        "exchange": t.exchange,
        "symbol": t.symbol,
        "trade_id": t.trade_id,
        "time": _utc(t.ts_event),
        "price": _dec(t.price),
        "size": _dec(t.size),
        "side": t.side,
        "received_at": _opt_utc(t.ts_recv),
        "origin": t.origin,
        "candle_close": _utc(item.candle_close),
        "watermark": _utc(item.watermark),
        "lateness_seconds": item.lateness.total_seconds(),
    }
    return "late", late_channel(t.exchange, t.symbol), payload


def health_message(h: CollectorHealth) -> Message:
    payload = {
        "kind": "health",
        "collector": h.collector,
        "time": _utc(h.time),
        "status": h.status,
        "should_be_running": h.should_be_running,
        "symbols": list(h.symbols),
        "data_types": list(h.data_types),
        "auto_restart": h.auto_restart,
        "health_check_interval_seconds": h.health_check_interval_seconds,
        "stale_data_threshold_seconds": h.stale_data_threshold_seconds,
        "last_check_time": _opt_utc(h.last_check_time),
        "messages_received": h.messages_received,
        "messages_processed": h.messages_processed,
        "errors": h.errors,
        "restarts": h.restarts,
        "uptime_seconds": h.uptime_seconds,
        "reconnect_attempts": h.reconnect_attempts,
        "last_message_time": _opt_utc(h.last_message_time),
        "last_error": h.last_error,
        "is_healthy": h.is_healthy,
        "issues": list(h.issues),
        "details": dict(h.details),
        "status_since": _opt_utc(h.status_since),
        "last_restart_time": _opt_utc(h.last_restart_time),
    }
    return "health", HEALTH_CHANNEL, payload


def bot_message(b: BotUpdate) -> Message:
    """A bot's account at a candle's close (paper trading): numbers as JSON numbers."""
    payload = {
        "kind": "bot",
        "bot": b.bot,
        "time": _utc(b.time),
        "equity": b.equity,
        "cash": b.cash,
        "position": b.position,
        "close": b.close,
        "state": b.state,
    }
    return "bot", bot_channel(b.bot), payload


_MESSAGES: dict[type, Callable[[Any], Message]] = {
    Candle: candle_message,
    ProvisionalCandle: provisional_message,
    IndicatorValue: indicator_message,
    Signal: signal_message,
    LateTrade: late_message,
    CollectorHealth: health_message,
    BotUpdate: bot_message,
}


def payload_of(item: LiveItem) -> Message:
    """``(kind, channel, payload)`` of one item; raises TypeError for anything else (a wiring bug)."""
    message = _MESSAGES.get(type(item))
    if message is None:
        raise TypeError(f"the Redis fan-out does not publish {type(item).__name__}")
    return message(item)


def encode(payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_UTC_Z)


def decode(data: bytes | str) -> dict[str, Any]:
    """A payload back as a dict: times as aware UTC datetimes, prices and sizes as ``Decimal``."""
    payload: dict[str, Any] = orjson.loads(data)
    for key, value in payload.items():
        if value is None or not isinstance(value, str):
            continue
        if key in _TIME_FIELDS:
            payload[key] = datetime.fromisoformat(value).astimezone(UTC)
        elif key in _DECIMAL_FIELDS:
            payload[key] = Decimal(value)
    return payload
