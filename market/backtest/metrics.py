"""Performance metrics of a backtest from its equity curve and trades (formulas in docs/backtest.md).

Returns are fractions (0.05 = 5 %), money is in the quote currency, times are ISO 8601 UTC. A value that
is undefined for the run (no closed trade, no losing trade, zero variance, no drawdown) is ``None``,
never NaN or infinity, so the result stores as JSON as it is. Nothing is rounded: values are IEEE-754
doubles as computed; rounding is for display only (``format_metric``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from market.backtest.account import AccountSettings, BacktestTrade, EquityCurve, EquityPoint
from market.timeframes import timeframe as lookup_timeframe

MetricValue = float | int | str | None

YEAR_SECONDS = 365 * 86_400
"""Crypto trades every day of the year: a year is 365 days of candles."""

METRICS: dict[str, tuple[str, str]] = {
    "start": ("Start (first open)", "time"),
    "end": ("End (last close)", "time"),
    "candles": ("Candles", "count"),
    "start_equity": ("Start equity", "quote"),
    "final_equity": ("Final equity", "quote"),
    "total_return": ("Total return", "fraction"),
    "cagr": ("CAGR", "fraction"),
    "max_drawdown": ("Max drawdown", "fraction"),
    "max_drawdown_start": ("Max drawdown peak", "time"),
    "max_drawdown_end": ("Max drawdown trough", "time"),
    "sharpe": ("Sharpe (annualised)", "ratio"),
    "sortino": ("Sortino (annualised)", "ratio"),
    "calmar": ("Calmar", "ratio"),
    "win_rate": ("Win rate", "fraction"),
    "profit_factor": ("Profit factor", "ratio"),
    "expectancy": ("Expectancy per trade", "quote"),
    "trades": ("Closed trades", "count"),
    "open_trades": ("Open trades", "count"),
    "average_duration_s": ("Average trade duration", "seconds"),
    "exposure": ("Exposure", "fraction"),
    "best_trade": ("Best trade", "quote"),
    "worst_trade": ("Worst trade", "quote"),
    "fees_paid": ("Fees paid", "quote"),
    "buy_and_hold_return": ("Buy-and-hold return", "fraction"),
}
"""Every key ``compute_metrics`` returns, in order: its label and its kind (how to show it)."""


def compute_metrics(
    equity: Sequence[EquityPoint],
    trades: Sequence[BacktestTrade],
    settings: AccountSettings,
    timeframe: str,
    first_open: float,
) -> dict[str, MetricValue]:
    """The metrics of a run: ``equity`` has one point per candle (oldest first), ``trades`` the closed
    trades and the open one if any, ``first_open`` the first candle's open price."""
    if len(equity) == 0:
        raise ValueError("a backtest needs at least one candle to measure")
    tf = lookup_timeframe(timeframe)
    times, closes, positions, values = _columns(equity)
    start = times[0] - tf.length
    end = times[-1]
    cash0 = settings.cash
    curve = np.empty(len(values) + 1)  # equity before the first candle, then at each close
    curve[0] = cash0
    curve[1:] = values
    final = float(curve[-1])
    periods = YEAR_SECONDS / tf.seconds
    drawdown, peak_at, trough_at = _max_drawdown(curve)
    cagr = _cagr(final / cash0, (end - start).total_seconds())
    sharpe, sortino = _risk_ratios(curve, periods)

    def when(index: int | None) -> str | None:
        """The time of a point of ``curve``: index 0 is the first open, index i the i-th close."""
        if index is None:
            return None
        return _iso(start if index == 0 else times[index - 1])

    metrics: dict[str, MetricValue] = {
        "start": _iso(start),
        "end": _iso(end),
        "candles": len(values),
        "start_equity": cash0,
        "final_equity": final,
        "total_return": final / cash0 - 1,
        "cagr": cagr,
        "max_drawdown": drawdown,
        "max_drawdown_start": when(peak_at),
        "max_drawdown_end": when(trough_at),
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": cagr / -drawdown if cagr is not None and drawdown < 0 else None,
    }
    metrics.update(_trade_metrics(trades))
    metrics["exposure"] = float(np.count_nonzero(positions)) / len(positions)
    metrics["fees_paid"] = math.fsum(trade.fees for trade in trades)
    metrics["buy_and_hold_return"] = float(closes[-1]) / first_open - 1
    return {key: metrics[key] for key in METRICS}


def format_metric(key: str, value: MetricValue) -> str:
    """A metric for people: percentages, two decimals for money and ratios, a duration for seconds."""
    if value is None:
        return "n/a"
    kind = METRICS[key][1]
    if kind in ("time", "count") or isinstance(value, str):
        return f"{value:,}" if isinstance(value, int) else str(value)
    if kind == "fraction":
        return f"{value * 100:+.2f} %" if key != "exposure" and key != "win_rate" else f"{value * 100:.1f} %"
    if kind == "seconds":
        return _duration(float(value))
    return f"{value:,.2f}"


def _columns(
    equity: Sequence[EquityPoint],
) -> tuple[Sequence[datetime], np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(equity, EquityCurve):
        return (
            equity.times,
            np.asarray(equity.closes, dtype=float),
            np.asarray(equity.positions, dtype=float),
            np.asarray(equity.equity, dtype=float),
        )
    n = len(equity)
    return (
        [point.time for point in equity],
        np.fromiter((point.close for point in equity), float, n),
        np.fromiter((point.position for point in equity), float, n),
        np.fromiter((point.equity for point in equity), float, n),
    )


def _max_drawdown(curve: np.ndarray) -> tuple[float, int | None, int | None]:
    """The deepest fall below the running peak, as a fraction (<= 0), with the indexes of its peak (the
    last point at the peak level before the trough) and of its trough (the first point at the bottom)."""
    peaks = np.maximum.accumulate(curve)
    falls = curve / peaks - 1
    trough = int(np.argmin(falls))
    deepest = float(falls[trough])
    if not deepest < 0:
        return 0.0, None, None
    at_peak = np.flatnonzero(curve[: trough + 1] == peaks[trough])
    return deepest, int(at_peak[-1]), trough


def _cagr(growth: float, elapsed_s: float) -> float | None:
    """Compound annual growth over the elapsed time; None where undefined (negative equity) or too big
    for a double (a large return over minutes)."""
    if growth < 0 or elapsed_s <= 0:
        return None
    if growth == 0:
        return -1.0
    try:
        return math.exp(math.log(growth) * YEAR_SECONDS / elapsed_s) - 1
    except OverflowError:
        return None


def _risk_ratios(curve: np.ndarray, periods: float) -> tuple[float | None, float | None]:
    """Sharpe and Sortino of the per-candle simple returns of equity, annualised, risk-free 0."""
    before = curve[:-1]
    if len(before) < 2 or not bool(np.all(before > 0)):
        return None, None
    returns = curve[1:] / before - 1
    mean = float(returns.mean())
    scale = math.sqrt(periods)
    spread = float(returns.std(ddof=1))
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    sharpe = mean / spread * scale if spread > 0 else None
    sortino = mean / downside * scale if downside > 0 else None
    return sharpe, sortino


def _trade_metrics(trades: Sequence[BacktestTrade]) -> dict[str, MetricValue]:
    closed = [trade for trade in trades if not trade.open]
    pnl = [trade.pnl for trade in closed]
    wins = [x for x in pnl if x > 0]
    gross_loss = -math.fsum(x for x in pnl if x < 0)
    durations = [(t.exit_time - t.entry_time).total_seconds() for t in closed if t.exit_time is not None]
    return {
        "win_rate": len(wins) / len(pnl) if pnl else None,
        "profit_factor": math.fsum(wins) / gross_loss if gross_loss > 0 else None,
        "expectancy": math.fsum(pnl) / len(pnl) if pnl else None,
        "trades": len(closed),
        "open_trades": len(trades) - len(closed),
        "average_duration_s": math.fsum(durations) / len(durations) if durations else None,
        "best_trade": max(pnl) if pnl else None,
        "worst_trade": min(pnl) if pnl else None,
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _duration(seconds: float) -> str:
    days, rest = divmod(round(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {round(seconds) % 60:02d}s"
