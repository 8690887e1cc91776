"""The figures of a backtest, pure: price with the trades, equity, drawdown, monthly returns, metrics.

Frames in, Bokeh models or HTML out; no I/O, no Panel. The standalone report
(``dashboards.backtest_report``) and the dashboard's Backtests page (``dashboards.backtests``) draw a run
with the same functions. Times are UTC; candles and equity points sit at their close (TIME.md rule 2);
a trade's entry and exit sit at their fill instant (the open of the candle whose open price filled it).

A long series is thinned for display only (never for the numbers): above ``MAX_POINTS`` candles,
consecutive candles are merged into one per ``k`` (open of the first, highest high, lowest low, close of
the last, volumes summed, at the last close) and the equity keeps each group's last point; the drawdown is
computed on every point first and keeps each group's deepest value, so the maximum drawdown shown is the
exact one.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource, GridPlot, HoverTool, NumeralTickFormatter, Range
from bokeh.plotting import figure

from dashboards.figures import _figure, legend_above, plain_ticks
from dashboards.shaping import COLORS, to_ms

if TYPE_CHECKING:
    from bokeh.models.sources import DataDict

MAX_POINTS = 5000
"""At most this many candles and equity points are drawn; longer series are thinned (module doc)."""
TIME_AXIS = "Time (UTC); candles and equity at their close, trades at their fill"
PERCENT_KEYS = frozenset(
    {"total_return", "cagr", "max_drawdown", "win_rate", "exposure", "buy_and_hold_return"}
)
"""Metrics that are fractions, shown as percentages."""
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TRADE_TIPS = [
    ("Trade", "@side (@state)"),
    ("Entry (UTC)", "@entry_text"),
    ("Entry price", "@entry_price{0,0.[00000000]}"),
    ("Exit (UTC)", "@exit_text"),
    ("Exit price", "@exit_price_text"),
    ("Quantity", "@quantity{0,0.[00000000]}"),
    ("PnL", "@pnl{0,0.00}"),
    ("Fees", "@fees{0,0.00}"),
]


# -- shaping ---------------------------------------------------------------------------------------
def group_size(rows: int, max_points: int = MAX_POINTS) -> int:
    """How many consecutive rows are merged into one drawn point: 1 when ``rows <= max_points``."""
    return max(1, math.ceil(rows / max_points))


def display_candles(candles: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """The candles to draw: as given when few enough, else merged ``k`` at a time (module doc)."""
    k = group_size(len(candles), max_points)
    frame = candles.reset_index(drop=True)
    if k == 1:
        return frame[["time", "open", "high", "low", "close", "volume"]].copy()
    groups = frame.groupby(frame.index // k, sort=True)
    return pd.DataFrame(
        {
            "time": groups["time"].last(),
            "open": groups["open"].first(),
            "high": groups["high"].max(),
            "low": groups["low"].min(),
            "close": groups["close"].last(),
            "volume": groups["volume"].sum(),
        }
    ).reset_index(drop=True)


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown at each point: equity over its running peak, minus one (0 at a new high, -0.2 = 20 % down)."""
    return equity / equity.cummax() - 1.0


def display_equity(equity: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """``time, equity, drawdown`` to draw: drawdown on every point (or the frame's own ``drawdown``
    column: a period's deepest, as the page reads a long run), then each group of ``k`` points keeps its
    last time and equity and its deepest drawdown."""
    deepest = equity["drawdown"] if "drawdown" in equity.columns else drawdown(equity["equity"])
    frame = pd.DataFrame(
        {"time": equity["time"], "equity": equity["equity"], "drawdown": deepest}
    ).reset_index(drop=True)
    k = group_size(len(frame), max_points)
    if k == 1:
        return frame
    groups = frame.groupby(frame.index // k, sort=True)
    return pd.DataFrame(
        {
            "time": groups["time"].last(),
            "equity": groups["equity"].last(),
            "drawdown": groups["drawdown"].min(),
        }
    ).reset_index(drop=True)


def monthly_returns(equity: pd.DataFrame, start_equity: float) -> pd.DataFrame:
    """Return of each calendar month (UTC), as a frame indexed by year with columns 1..12 (NaN: no data).

    A point belongs to the month of the interval it closes (a candle closing at 00:00 on the 1st is the
    previous month's last); a month's return is its last equity over the previous month's last equity
    (the starting equity for the first month), minus one."""
    covered = pd.DatetimeIndex(equity["time"]) - pd.Timedelta(microseconds=1)
    last = equity["equity"].groupby([covered.year, covered.month], sort=True).last()
    before = last.shift(1)
    if len(before):
        before.iloc[0] = start_equity
    table = (last / before - 1.0).rename_axis(["year", "month"]).unstack("month")
    return table.reindex(columns=range(1, 13))


def utc_minutes(value: Any) -> str:
    """``2026-03-01 12:05 UTC`` (seconds when not whole minutes); empty for None/NaT."""
    if value is None or pd.isna(value):
        return ""
    stamp = pd.Timestamp(value).tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M:%S" if stamp.second else "%Y-%m-%d %H:%M") + " UTC"


def candle_columns(candles: pd.DataFrame) -> DataDict:
    """Columns of the candle source: time (ms, the close), OHLC, body top/bottom and colour."""
    opens, closes = candles["open"].to_numpy(float), candles["close"].to_numpy(float)
    colors = np.where(closes > opens, COLORS["up"], np.where(closes < opens, COLORS["down"], COLORS["flat"]))
    return {
        "time": to_ms(candles["time"]),
        "open": opens,
        "high": candles["high"].to_numpy(float),
        "low": candles["low"].to_numpy(float),
        "close": closes,
        "body_top": np.maximum(opens, closes),
        "body_bottom": np.minimum(opens, closes),
        "color": colors.tolist(),
    }


def trade_columns(trades: Sequence[Mapping[str, Any]]) -> DataDict:
    """Columns of the trade sources: entry and exit (ms, price; an open trade's exit is NaN) and the
    hover's numbers."""

    def times(key: str) -> np.ndarray:
        stamps = pd.to_datetime([t[key] for t in trades], utc=True)
        return np.where(stamps.isna(), np.nan, to_ms(stamps.fillna(pd.Timestamp(0, tz="UTC"))))

    exit_prices = [math.nan if t["exit_price"] is None else float(t["exit_price"]) for t in trades]
    return {
        "entry_time": times("entry_time"),
        "entry_price": np.array([float(t["entry_price"]) for t in trades]),
        "exit_time": times("exit_time"),
        "exit_price": np.array(exit_prices),
        "side": [str(t["side"]) for t in trades],
        "state": ["open" if t["open"] else "closed" for t in trades],
        "entry_text": [utc_minutes(t["entry_time"]) for t in trades],
        "exit_text": [utc_minutes(t["exit_time"]) or "still open" for t in trades],
        "exit_price_text": ["" if math.isnan(p) else f"{p:,.8g}" for p in exit_prices],
        "quantity": np.array([float(t["quantity"]) for t in trades]),
        "pnl": np.array([float(t["pnl"]) for t in trades]),
        "fees": np.array([float(t["fees"]) for t in trades]),
        "color": [COLORS["up"] if float(t["pnl"]) >= 0 else COLORS["down"] for t in trades],
        "entry_marker": ["triangle" if t["side"] == "long" else "inverted_triangle" for t in trades],
    }


# -- figures ---------------------------------------------------------------------------------------
def price_figure(candles: pd.DataFrame, trades: Sequence[Mapping[str, Any]], title: str) -> figure:
    """Candles with each trade: entry marker (▲ long, ▼ short), exit marker (●), a line between them
    coloured by the trade's result; the hover gives the trade's numbers."""
    shown = display_candles(candles)
    source = ColumnDataSource(candle_columns(shown), name="tcp-bt-candles")
    spacing = float(np.median(np.diff(source.data["time"]))) if len(shown) > 1 else 60_000.0
    price = _figure("tcp-bt-price", 380, title=title)
    price.segment("time", "low", "time", "high", source=source, line_color="color")
    price.vbar(
        "time",
        spacing * 0.7,
        "body_top",
        "body_bottom",
        source=source,
        fill_color="color",
        line_color="color",
    )
    marks = ColumnDataSource(trade_columns(trades), name="tcp-bt-trades")
    price.segment(
        "entry_time", "entry_price", "exit_time", "exit_price", source=marks, line_color="color", line_width=2
    )
    ends: list[tuple[str, str, dict[str, Any]]] = [
        (
            "entry",
            "entries",
            {"marker": "entry_marker", "size": 12, "fill_color": "#1565c0", "line_color": "white"},
        ),
        ("exit", "exits", {"marker": "circle", "size": 10, "fill_color": "color", "line_color": "black"}),
    ]
    markers: list[Any] = [
        price.scatter(f"{end}_time", f"{end}_price", source=marks, name=f"tcp-bt-{name}", **style)
        for end, name, style in ends
    ]
    price.add_tools(HoverTool(renderers=markers, tooltips=TRADE_TIPS))
    price.yaxis.axis_label = "Price"
    price.yaxis.formatter = plain_ticks("tcp-bt-price-ticks")
    return price


def equity_figures(
    equity: pd.DataFrame, candles: pd.DataFrame, start_equity: float, x_range: Range
) -> list[figure]:
    """Equity (with buy-and-hold of the same starting equity from the first open) and drawdown."""
    shown = display_equity(equity)
    first_open = float(candles["open"].iloc[0]) if len(candles) else math.nan
    hold = display_candles(candles)
    source = ColumnDataSource(
        {
            "time": to_ms(shown["time"]),
            "equity": shown["equity"].to_numpy(float),
            "drawdown": shown["drawdown"].to_numpy(float),
        },
        name="tcp-bt-equity-points",
    )
    held = ColumnDataSource(
        {"time": to_ms(hold["time"]), "equity": start_equity * hold["close"].to_numpy(float) / first_open},
        name="tcp-bt-hold",
    )
    curve = _figure("tcp-bt-equity", 220, x_range=x_range)
    line = curve.line("time", "equity", source=source, color="#1565c0", line_width=1.6)
    hold_line = curve.line("time", "equity", source=held, color="#9e9e9e", line_dash="dashed")
    legend_above(curve, [("strategy", line), ("buy and hold", hold_line)])
    curve.add_tools(
        HoverTool(
            renderers=[line],
            tooltips=[("Time (UTC)", "@time{%F %H:%M}"), ("Equity", "@equity{0,0.00}")],
            formatters={"@time": "datetime"},
        )
    )
    curve.yaxis.axis_label = "Equity"
    curve.yaxis.formatter = NumeralTickFormatter(format="0,0", name="tcp-bt-equity-ticks")
    down = _figure("tcp-bt-drawdown", 150, x_range=x_range)
    down.varea("time", 0, "drawdown", source=source, fill_color=COLORS["down"], fill_alpha=0.4)
    down.line("time", "drawdown", source=source, color=COLORS["down"])
    down.yaxis.axis_label = "Drawdown"
    down.yaxis.formatter = NumeralTickFormatter(format="0.[0]%", name="tcp-bt-drawdown-ticks")
    return [curve, down]


def run_layout(
    candles: pd.DataFrame,
    equity: pd.DataFrame,
    trades: Sequence[Mapping[str, Any]],
    start_equity: float,
    title: str,
) -> GridPlot:
    """Price with the trades over equity and drawdown, one shared time axis."""
    price = price_figure(candles, trades, title)
    figures = [price, *equity_figures(equity, candles, start_equity, price.x_range)]
    for fig in figures[:-1]:
        fig.xaxis.major_label_text_font_size = "0pt"
    figures[-1].xaxis.axis_label = TIME_AXIS
    return gridplot(
        [[fig] for fig in figures], merge_tools=True, toolbar_location="right", sizing_mode="stretch_width"
    )


# -- tables ----------------------------------------------------------------------------------------
def metric_text(key: str, value: Any) -> str:
    """A metric for people: fractions as percentages, durations (``..._s``) as days, hours and minutes,
    times in UTC, numbers with separators, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return _time_text(value)
    if isinstance(value, bool):
        return str(value)
    if key in PERCENT_KEYS:
        return f"{value * 100:,.2f} %"
    if key.endswith("_s"):
        return duration_text(float(value))
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.2f}"


def _time_text(text: str) -> str:
    """An ISO 8601 time with its offset as ``2026-01-01 00:05 UTC``; any other text as it is."""
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        return text
    return text if time.tzinfo is None else utc_minutes(time)


def duration_text(seconds: float) -> str:
    """``2d 3h 5m``, ``1h 56m``, ``45s``: whole units, the largest first, zero units left out."""
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest}s"
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{v}{unit}" for v, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join(parts) or "0m"


def metrics_html(metrics: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr data-metric="{html.escape(k)}"><th>{html.escape(k)}</th>'
        f"<td>{html.escape(metric_text(k, v))}</td></tr>"
        for k, v in metrics.items()
    )
    return f'<table class="tcp-bt-metrics" data-testid="backtest-metrics">{rows}</table>'


def monthly_html(table: pd.DataFrame) -> str:
    """The monthly returns as a heat map table: green gains, red losses, deeper for larger moves."""
    head = "".join(f"<th>{m}</th>" for m in MONTHS)
    body = []
    for year, row in table.iterrows():
        cells = []
        for value in row:
            if pd.isna(value):
                cells.append("<td></td>")
                continue
            alpha = min(1.0, abs(value) / 0.1) * 0.6 + 0.1
            rgb = "38,166,154" if value >= 0 else "239,83,80"
            cells.append(f'<td style="background:rgba({rgb},{alpha:.2f})">{value * 100:.2f} %</td>')
        body.append(f"<tr><th>{year}</th>{''.join(cells)}</tr>")
    return (
        f'<table class="tcp-bt-monthly" data-testid="backtest-monthly"><tr><th>UTC</th>{head}</tr>'
        f"{''.join(body)}</table>"
    )
