"""Items that exist only on the live fan-out (the provisional candle, collector health) and its payloads.

Pure data and pure functions (no I/O, no clock reads): a ``ProvisionalCandle`` is the in-progress
candle shown live and never fed to indicators, signals, storage or backtests (TIME.md rule 7);
``ProvisionalThrottle`` limits how often each series' provisional candle is published;
``CollectorHealth`` is a collector's status snapshot, and ``assess_health`` derives its issues;
``payload_of``/``encode``/``decode`` are the wire format of connectors/redis_fanout.py (docs/redis.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

from market.types import Candle, IndicatorValue, Signal
from market.windowing import LateTrade

SeriesKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class ProvisionalCandle:
    """The in-progress candle over ``[open_time, close_time)`` as of ``as_of``: it may still change.

    Labelled like a final candle, by ``time`` = ``close_time`` (TIME.md rule 2), and marked
    ``"provisional": true`` on every public surface.
    """

    exchange: str
    symbol: str
    timeframe: str
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    vwap: Decimal | None
    as_of: datetime

    @property
    def time(self) -> datetime:
        return self.close_time

    @property
    def series(self) -> SeriesKey:
        return (self.exchange, self.symbol, self.timeframe)


@dataclass
class ProvisionalThrottle:
    """At most ``max_per_second`` provisional updates per series, never losing a candle's last state.

    Time is the items' own ``as_of`` (or the ``now`` passed in), so the throttle is deterministic.
    An update arriving too soon is held (replacing any held one of the same series); it is released
    by ``due(now)`` once its slot comes, or at once when the series moves on to the next candle, so
    the final state of every in-progress candle is always passed.
    """

    max_per_second: float = 2.0
    _last_sent: dict[SeriesKey, datetime] = field(default_factory=dict, init=False, repr=False)
    _held: dict[SeriesKey, ProvisionalCandle] = field(default_factory=dict, init=False, repr=False)

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=1 / self.max_per_second)

    def offer(self, item: ProvisionalCandle) -> list[ProvisionalCandle]:
        """The updates to publish now given this new one (zero, one or two items, oldest first)."""
        key = item.series
        out: list[ProvisionalCandle] = []
        held = self._held.get(key)
        if held is not None and held.open_time != item.open_time:
            out.append(self._held.pop(key))  # the previous candle's final state
            self._last_sent[key] = held.as_of
        last = self._last_sent.get(key)
        if out or last is None or item.as_of - last >= self.interval:
            self._held.pop(key, None)
            self._last_sent[key] = item.as_of
            out.append(item)
        else:
            self._held[key] = item
        return out

    def due(self, now: datetime) -> list[ProvisionalCandle]:
        """Held updates whose slot has come by ``now``."""
        out = []
        for key in list(self._held):
            if now - self._last_sent[key] >= self.interval:
                out.append(self._held.pop(key))
                self._last_sent[key] = now
        return out

    def drain(self) -> list[ProvisionalCandle]:
        """Every held update (e.g. at shutdown)."""
        out = list(self._held.values())
        self._held.clear()
        return out


# ---------------------------------------------------------------------------------------------
# Collector health.

Status = Literal["starting", "running", "reconnecting", "stopped", "error"]

HEALTH_EXPIRES_AFTER = timedelta(seconds=30)
"""A snapshot older than this is not current: its collector is not reporting (stopped, killed or from an
earlier run). The Redis key of the latest snapshot expires after it; readers of the ``collector_health``
table compare its ``time`` with it."""


@dataclass(frozen=True, slots=True)
class HealthRules:
    """Thresholds of ``assess_health``; see docs/redis.md for each issue."""

    stale_after: timedelta = timedelta(seconds=60)
    max_error_rate: float = 0.05
    min_messages_for_rate: int = 20
    max_reconnects: int = 5
    reconnect_window: timedelta = timedelta(minutes=5)
    max_backlog: int = 10_000
    max_ingestion_stall: timedelta = timedelta(seconds=10)
    """Longest span over which trade pushes may keep arriving while none is accepted (``details``
    ``ingestion_stalled_seconds``): beyond it ingestion has stopped although the socket is up."""


@dataclass(frozen=True, slots=True)
class CollectorHealth:
    """A collector's status snapshot at ``time``; ``is_healthy``/``issues`` come from ``assess_health``."""

    collector: str
    time: datetime
    status: Status
    should_be_running: bool
    messages_received: int = 0
    messages_processed: int = 0
    errors: int = 0
    restarts: int = 0
    uptime_seconds: float = 0.0
    reconnect_attempts: int = 0
    last_message_time: datetime | None = None
    last_error: str | None = None
    is_healthy: bool = True
    issues: tuple[str, ...] = ()
    details: Mapping[str, float] = field(default_factory=dict)
    """Free-form extra numbers (e.g. per-kind publish counters)."""
    status_since: datetime | None = None
    """When the collector entered ``status`` (None: unknown)."""
    last_restart_time: datetime | None = None
    """When the collector's process was last restarted by the supervisor (None: never)."""


def health_issues(
    h: CollectorHealth, rules: HealthRules = HealthRules(), previous: CollectorHealth | None = None
) -> tuple[str, ...]:
    """What is wrong with a collector, judged from its counters and timestamps at ``h.time``.

    Rates use the change since ``previous`` (the collector's previous snapshot) when given, else the
    totals since start.
    """
    issues: list[str] = []
    if h.status == "error":
        issues.append(f"status is error: {h.last_error or 'no error message'}")
    elif h.should_be_running and h.status != "running":
        issues.append(f"status is {h.status} but the collector should be running")
    if h.should_be_running:
        stale = rules.stale_after.total_seconds()
        if h.last_message_time is None:
            if h.uptime_seconds > stale:
                issues.append(
                    f"no message received in {h.uptime_seconds:.0f} s since start (limit {stale:.0f} s)"
                )
        else:
            quiet = (h.time - h.last_message_time).total_seconds()
            if quiet > stale:
                issues.append(f"no message for {quiet:.0f} s (limit {stale:.0f} s)")
    base = previous if previous is not None and previous.time < h.time else None
    received = h.messages_received - (base.messages_received if base else 0)
    errors = h.errors - (base.errors if base else 0)
    if received >= rules.min_messages_for_rate and errors / received > rules.max_error_rate:
        issues.append(
            f"error rate {errors / received:.1%} over {received} messages (limit {rules.max_error_rate:.1%})"
        )
    elif received < rules.min_messages_for_rate and errors >= rules.min_messages_for_rate:
        issues.append(f"{errors} errors over only {received} messages")
    window = rules.reconnect_window.total_seconds()
    if base is not None:
        reconnects = h.reconnect_attempts - base.reconnect_attempts
        span = (h.time - base.time).total_seconds()
    else:
        reconnects, span = h.reconnect_attempts, h.uptime_seconds
    per_window = reconnects * window / max(span, window)
    if reconnects and per_window >= rules.max_reconnects:
        issues.append(
            f"reconnect storm: {reconnects} reconnect attempts in {span:.0f} s "
            f"(limit {rules.max_reconnects} per {window:.0f} s)"
        )
    stalled = h.details.get("ingestion_stalled_seconds", 0.0)
    limit = rules.max_ingestion_stall.total_seconds()
    if h.should_be_running and stalled > limit:
        issues.append(
            f"ingestion stopped: trade pushes kept arriving for {stalled:.0f} s and none was "
            f"accepted (limit {limit:.0f} s); last error: {h.last_error or 'none'}"
        )
    backlog = h.messages_received - h.messages_processed
    if backlog > rules.max_backlog:
        issues.append(f"backlog of {backlog} received but unprocessed messages (limit {rules.max_backlog})")
    return tuple(issues)


def assess_health(
    h: CollectorHealth, rules: HealthRules = HealthRules(), previous: CollectorHealth | None = None
) -> CollectorHealth:
    """``h`` with ``issues`` and ``is_healthy`` filled in by ``health_issues``."""
    issues = health_issues(h, rules, previous)
    return replace(h, issues=issues, is_healthy=not issues)


# ---------------------------------------------------------------------------------------------
# Channels and payloads of the live fan-out (docs/redis.md).

LiveItem = Candle | ProvisionalCandle | IndicatorValue | Signal | LateTrade | CollectorHealth
KINDS = ("candle", "provisional", "indicator", "signal", "late", "health")
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
    }
)
_DECIMAL_FIELDS = frozenset(
    {"open", "high", "low", "close", "volume", "quote_volume", "vwap", "price", "size"}
)


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


def _candle_fields(c: Candle | ProvisionalCandle) -> dict[str, Any]:
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


def payload_of(item: LiveItem) -> tuple[str, str, dict[str, Any]]:
    """``(kind, channel, payload)`` of one item; raises TypeError for anything else (a wiring bug)."""
    if isinstance(item, Candle):
        return (
            "candle",
            candle_channel(item.exchange, item.symbol, item.timeframe),
            {
                "kind": "candle",
                **_candle_fields(item),
                "provisional": False,
                "first_trade_id": item.first_trade_id,
                "last_trade_id": item.last_trade_id,
            },
        )
    if isinstance(item, ProvisionalCandle):
        return (
            "provisional",
            provisional_channel(item.exchange, item.symbol, item.timeframe),
            {"kind": "provisional", **_candle_fields(item), "provisional": True, "as_of": _utc(item.as_of)},
        )
    if isinstance(item, IndicatorValue):
        return (
            "indicator",
            indicator_channel(item.exchange, item.symbol, item.timeframe),
            {
                "kind": "indicator",
                "exchange": item.exchange,
                "symbol": item.symbol,
                "timeframe": item.timeframe,
                "time": _utc(item.time),
                "indicator": item.indicator,
                "values": dict(item.values),
            },
        )
    if isinstance(item, Signal):
        return (
            "signal",
            signal_channel(item.exchange, item.symbol, item.timeframe),
            {
                "kind": "signal",
                "exchange": item.exchange,
                "symbol": item.symbol,
                "timeframe": item.timeframe,
                "time": _utc(item.time),
                "strategy": item.strategy,
                "action": item.action,
                "reason": item.reason,
                "values": dict(item.values),
            },
        )
    if isinstance(item, LateTrade):
        t = item.trade
        return (
            "late",
            late_channel(t.exchange, t.symbol),
            {
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
            },
        )
    if isinstance(item, CollectorHealth):
        return (
            "health",
            HEALTH_CHANNEL,
            {
                "kind": "health",
                "collector": item.collector,
                "time": _utc(item.time),
                "status": item.status,
                "should_be_running": item.should_be_running,
                "messages_received": item.messages_received,
                "messages_processed": item.messages_processed,
                "errors": item.errors,
                "restarts": item.restarts,
                "uptime_seconds": item.uptime_seconds,
                "reconnect_attempts": item.reconnect_attempts,
                "last_message_time": _opt_utc(item.last_message_time),
                "last_error": item.last_error,
                "is_healthy": item.is_healthy,
                "issues": list(item.issues),
                "details": dict(item.details),
                "status_since": _opt_utc(item.status_since),
                "last_restart_time": _opt_utc(item.last_restart_time),
            },
        )
    raise TypeError(f"the Redis fan-out does not publish {type(item).__name__}")


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
