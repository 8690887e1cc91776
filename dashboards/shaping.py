"""Pure shaping of chart data: no I/O, no Panel, testable without a browser.

Candle frames become the columns of a Bokeh ``ColumnDataSource`` (times in milliseconds since the epoch,
each candle at its close, TIME.md rule 2); indicator outputs are placed over the price or in a sub-panel;
live messages of one series are sorted into what a drain changes (``sort_live``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from configs.indicators import IndicatorsConfig
from connectors.redis_reader import LiveMessage
from dashboards.data import candle_frame
from market.timeframes import TIMEFRAMES

if TYPE_CHECKING:
    from bokeh.models import ColumnDataSource
    from bokeh.models.sources import DataDict

OVERLAY_INDICATORS = frozenset(
    (
        "SMA EMA WMA DEMA TEMA TRIMA KAMA T3 BBANDS KELTNER DONCHIAN VWAP SAR LINEARREG ICHIMOKU SUPERTREND"
    ).split()
)
"""Indicators whose outputs are prices: drawn over the candles; all others get a sub-panel."""
DEFAULT_INDICATORS = frozenset({"EMA", "SMA", "BBANDS", "RSI", "MACD"})
COLORS = {"up": "#26a69a", "down": "#ef5350", "flat": "#9e9e9e"}
LINE_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
SIGNAL_STYLE = {
    "buy": ("triangle", "#2e7d32"),
    "sell": ("inverted_triangle", "#c62828"),
    "flat": ("circle", "#616161"),
}
TIME_AXIS = "Candle close time (UTC); each candle is labelled by its close"
EPOCH = pd.Timestamp(0, tz="UTC")
MS = pd.Timedelta(milliseconds=1)
MINUTE = timedelta(minutes=1)


# -- pure shaping -----------------------------------------------------------------------------------
def placement(indicator: str, output: str) -> Literal["overlay", "panel"]:
    """Where an indicator output is drawn: over the price (same scale) or in a sub-panel of its own."""
    if indicator.upper() == "SUPERTREND" and output == "direction":
        return "panel"
    return "overlay" if indicator.upper() in OVERLAY_INDICATORS else "panel"


def configured_indicators(config: IndicatorsConfig, symbol: str, timeframe: str) -> dict[str, str]:
    """The indicator labels configured for a series, with the registered indicator each one runs."""
    return {
        entry.key: entry.indicator
        for profile in config.profiles
        if profile.applies_to(symbol, timeframe)
        for entry in profile.indicators
    }


def columns(source: ColumnDataSource) -> Mapping[str, Sequence[Any]]:
    """A source's columns as read back. Bokeh's stub types ``data`` as everything it accepts (frames,
    arrays); the chart only ever assigns and streams lists, so lists are what it holds."""
    return cast("Mapping[str, Sequence[Any]]", source.data)


def user_labels(configured: Mapping[str, str], user: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The labels a series' chart offers: the configured ones, then its user indicators' (a user label a
    configured one already has is the configured one's: the flow ignores such a user indicator)."""
    return {
        **configured,
        **{label: entry["indicator"] for label, entry in user.items() if label not in configured},
    }


def default_selection(configured: Mapping[str, str]) -> list[str]:
    return [label for label, name in configured.items() if name.upper() in DEFAULT_INDICATORS]


def to_ms(times: pd.Series | pd.Index | Sequence[datetime]) -> np.ndarray:
    """UTC times as milliseconds since the epoch (what a Bokeh datetime axis plots)."""
    if len(times) == 0:
        return np.empty(0, dtype="float64")
    return np.asarray((pd.DatetimeIndex(times) - EPOCH) / MS, dtype="float64")


def utc_text(ms: float, seconds: bool = False) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime(
        "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    )


def chart_columns(frame: pd.DataFrame, timeframe: str, provisional: bool = False) -> DataDict:
    """Columns of the candle source: times in ms (the close), prices, body bounds, colour, exact text."""
    length = TIMEFRAMES[timeframe].length / MS
    closes = to_ms(frame["time"])
    o, c = frame["open"].to_numpy(float), frame["close"].to_numpy(float)
    flat = frame["trade_count"].to_numpy() == 0
    color = np.where(flat, COLORS["flat"], np.where(c >= o, COLORS["up"], COLORS["down"]))
    return {
        "time": closes.tolist(),
        **{f: frame[f].astype(float).tolist() for f in ("open", "high", "low", "close", "volume")},
        **{f"{f}_text": frame[f"{f}_text"].tolist() for f in ("open", "high", "low", "close", "volume")},
        "trade_count": frame["trade_count"].astype(int).tolist(),
        "body_top": np.maximum(o, c).tolist(),
        "body_bottom": np.minimum(o, c).tolist(),
        "color": ["#9e9e9e" if provisional else x for x in color.tolist()],
        "interval": [f"[{utc_text(t - length)}, {utc_text(t)}) UTC" for t in closes],
        "state": ["provisional, may still change" if provisional else "final"] * len(frame),
    }


def indicator_columns(values: pd.DataFrame, label: str, outputs: Sequence[str]) -> DataDict:
    """One label's long rows (``time, indicator, output, value``) as wide columns ``time`` + outputs."""
    rows = values[values["indicator"] == label]
    wide = rows.pivot_table(index="time", columns="output", values="value", aggfunc="last")
    wide = wide.reindex(columns=list(outputs))
    return {"time": to_ms(wide.index).tolist(), **{o: wide[o].astype(float).tolist() for o in outputs}}


def indicator_row(payload: Mapping[str, Any], outputs: Iterable[str]) -> DataDict:
    """A live indicator value as one row of its label's source: the close time in ms and each output
    (NaN where the payload has none, drawn as a gap)."""
    values = payload["values"]
    row: DataDict = {"time": to_ms([payload["time"]]).tolist()}
    row |= {k: [math.nan if values.get(k) is None else float(values[k])] for k in outputs}
    return row


def has_values(columns: Mapping[str, Iterable[Any]]) -> bool:
    """Whether any output column (not ``time``) holds a finite number."""
    return any(math.isfinite(v) for k, vs in columns.items() if k != "time" for v in vs)


def price_at(times: Sequence[float], closes: Sequence[float], t: float) -> float:
    """The close of the candle labelled ``t`` (searching from the newest), else NaN."""
    for i in range(len(times) - 1, -1, -1):
        if times[i] == t:
            return float(closes[i])
        if times[i] < t:
            break
    return math.nan


def signal_columns(signals: pd.DataFrame, times: Sequence[float], closes: Sequence[float]) -> DataDict:
    """Signal markers at the close of the candle that caused them, styled by action."""
    ts = to_ms(signals["time"]).tolist()
    actions = signals["action"].tolist()
    return {
        "time": ts,
        "price": [price_at(times, closes, t) for t in ts],
        "action": actions,
        "strategy": signals["strategy"].tolist(),
        "reason": signals["reason"].tolist(),
        "marker": [SIGNAL_STYLE.get(a, SIGNAL_STYLE["flat"])[0] for a in actions],
        "color": [SIGNAL_STYLE.get(a, SIGNAL_STYLE["flat"])[1] for a in actions],
    }


def instrument_list(configured: Sequence[str], stored: Iterable[str]) -> list[str]:
    """The instrument selector's choices: the configured instruments first, then the others the database
    holds, sorted."""
    first = list(dict.fromkeys(configured))
    return first + sorted(set(stored) - set(first))


def in_progress(
    timeframe: str, minutes: Iterable[Mapping[str, Any]], provisional: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The in-progress candle of a higher timeframe, derived from its 1m parts: the final 1m candles of
    the newest interval plus the current provisional 1m candle (the fan-out publishes provisional
    candles of 1m only). Labelled by its close like every candle; ``as_of`` is the provisional's, else
    the close of the newest part. None without parts."""
    tf = TIMEFRAMES[timeframe]
    parts = {m["time"]: m for m in minutes}
    if provisional is not None and provisional["time"] > max(parts, default=provisional["time"] - MINUTE):
        parts[provisional["time"]] = provisional
    if not parts:
        return None
    close = tf.close_of(max(parts) - MINUTE)
    rows = [parts[t] for t in sorted(parts) if close - tf.length < t <= close]
    return {
        "time": close,
        "open_time": close - tf.length,
        "open": rows[0]["open"],
        "high": max(r["high"] for r in rows),
        "low": min(r["low"] for r in rows),
        "close": rows[-1]["close"],
        "volume": sum((r["volume"] for r in rows), start=type(rows[0]["volume"])(0)),
        "trade_count": sum(int(r["trade_count"]) for r in rows),
        "as_of": rows[-1].get("as_of") or rows[-1]["time"],
    }


@dataclass
class MinuteParts:
    """The 1m parts of a higher timeframe's newest interval: final 1m candles (stored or live) and the
    current provisional 1m candle, from which ``in_progress`` derives the candle still open."""

    timeframe: str
    minutes: dict[datetime, Mapping[str, Any]] = field(default_factory=dict)
    provisional: Mapping[str, Any] | None = None

    def add(self, kind: str, payload: Mapping[str, Any]) -> None:
        """A final (``candle``) or ``provisional`` 1m candle; only the newest interval's parts are kept."""
        if kind == "candle":
            self.minutes[payload["time"]] = payload
        elif self.provisional is None or (payload["time"], payload["as_of"]) >= (
            self.provisional["time"],
            self.provisional["as_of"],
        ):
            self.provisional = payload
        newest = max(self.minutes, default=None)
        if newest is not None:
            keep_after = newest - TIMEFRAMES[self.timeframe].length
            self.minutes = {t: m for t, m in self.minutes.items() if t > keep_after}
            if self.provisional is not None and self.provisional["time"] <= newest:
                self.provisional = None

    def candle(self, last_time: datetime | None) -> dict[str, Any] | None:
        """The in-progress candle if its interval is newer than the newest final candle shown."""
        candle = in_progress(self.timeframe, self.minutes.values(), self.provisional)
        return None if candle is None or (last_time is not None and candle["time"] <= last_time) else candle


@dataclass
class LiveBatch:
    """What a drain of the live queue changes in one series' chart."""

    candles: pd.DataFrame
    provisional: dict[str, Any] | None = None
    indicators: list[dict[str, Any]] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)


def sort_live(
    messages: Iterable[LiveMessage],
    channels: Mapping[str, str],
    last_time: datetime | None,
    provisional: dict[str, Any] | None = None,
) -> LiveBatch:
    """Sort live messages of one series: final candles newer than ``last_time`` (deduplicated, oldest
    first), the newest provisional candle still in progress after them (or the current one), indicator
    values and signals (stamped with a candle's close, so the caller dedupes them against its own)."""
    kind_of = {channel: kind for kind, channel in channels.items()}
    candles: dict[datetime, dict[str, Any]] = {}
    out = LiveBatch(candle_frame([]))
    for message in messages:
        kind, payload = kind_of.get(message.channel), message.payload
        if kind is None or (
            kind in ("candle", "provisional") and last_time is not None and payload["time"] <= last_time
        ):
            continue
        if kind == "candle":
            candles[payload["time"]] = payload
        elif kind == "provisional":
            if provisional is None or (payload["time"], payload["as_of"]) >= (
                provisional["time"],
                provisional["as_of"],
            ):
                provisional = payload
        else:
            (out.indicators if kind == "indicator" else out.signals).append(payload)
    out.candles = candle_frame(candles[t] for t in sorted(candles))
    newest = max(candles, default=last_time)
    out.provisional = (
        provisional if provisional is None or newest is None or provisional["time"] > newest else None
    )
    return out
