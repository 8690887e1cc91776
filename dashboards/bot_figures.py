"""What the Bots page draws, pure: the summary table, a bot's open position, and its figures.

Rows and frames in, HTML or Bokeh models out; no I/O, no Panel. A bot is drawn with the backtest's
figure code (``dashboards.backtest_figures``): its candles with its fills on them, its equity (with
buy-and-hold from the first candle's open) and its drawdown, on one time axis. Candles and equity points
sit at their close (TIME.md rule 2); a fill sits at its instant, the open of the candle whose open price
filled it, like a backtest's trades.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, GridPlot, HoverTool
from bokeh.plotting import figure

from dashboards.backtest_figures import metric_text, run_layout, utc_minutes
from dashboards.shaping import SIGNAL_STYLE, to_ms

if TYPE_CHECKING:
    from bokeh.models.sources import DataDict

__all__ = ["bot_layout", "bot_rows", "fill_columns", "position_html", "summary_cells"]

SUMMARY_HEAD = (
    "bot",
    "series",
    "strategy",
    "state",
    "equity",
    "P&L",
    "exposure",
    "position",
    "fills",
    "last candle (UTC)",
)
TIME_AXIS = "Time (UTC); candles and equity at their close, fills at the open that filled them"
FILL_TIPS = [
    ("Fill", "@side @quantity{0,0.[00000000]} at @price{0,0.[00000000]}"),
    ("Time (UTC)", "@time{%F %H:%M}"),
    ("Signal (UTC)", "@signal_text"),
    ("Fee", "@fee{0,0.00}"),
]


def strategy_text(config: Mapping[str, Any]) -> str:
    """``ema_crossover(fast=2, slow=3)``: a bot's template and parameters."""
    params = ", ".join(f"{k}={v:g}" for k, v in sorted((config.get("params") or {}).items()))
    return f"{config.get('strategy', '?')}({params})"


def start_cash(config: Mapping[str, Any]) -> float:
    """The cash a bot started with (its account's ``cash``; the account default when not given)."""
    return float((config.get("account") or {}).get("cash", 10_000.0))


def summary_cells(bot: Mapping[str, Any]) -> list[str]:
    """One bot's cells of the summary table: equity, P&L against its starting cash, exposure (the
    position's value at the last close over equity), signed position; ``n/a`` before its first candle."""
    config = bot["config"] or {}
    cash = start_cash(config)
    if bot.get("equity") is None:
        money = ["n/a", "n/a", "n/a", "flat"]
    else:
        equity, position, close = (float(bot[k]) for k in ("equity", "position", "close"))
        pnl = equity - cash
        exposure = abs(position * close) / equity if equity else 0.0
        money = [
            f"{equity:,.2f}",
            f"{pnl:+,.2f} ({pnl / cash * 100:+.2f} %)",
            metric_text("exposure", exposure),
            position_text(position),
        ]
    return [
        str(bot["name"]),
        f"{bot['exchange']} {bot['symbol']} {bot['timeframe']}",
        strategy_text(config),
        str(bot["state"]),
        *money,
        f"{int(bot.get('fills') or 0):,}",
        utc_minutes(bot.get("time")),
    ]


def position_text(position: float) -> str:
    if position == 0:
        return "flat"
    return f"{'long' if position > 0 else 'short'} {abs(position):,.8g}"


def bot_rows(bots: Sequence[Mapping[str, Any]], selected: str | None = None) -> str:
    """The summary table of all bots as HTML, one row per bot (the selected one marked)."""
    header = "".join(f"<th>{html.escape(h)}</th>" for h in SUMMARY_HEAD)
    rows = []
    for bot in bots:
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in summary_cells(bot))
        name = html.escape(str(bot["name"]), quote=True)
        mark = ' class="tcp-bot-selected"' if bot["name"] == selected else ""
        rows.append(
            f'<tr data-testid="bot-row" data-bot="{name}" data-state="{html.escape(str(bot["state"]))}"'
            f"{mark}>{cells}</tr>"
        )
    return f'<table class="tcp-bt-metrics tcp-bots-table"><tr>{header}</tr>{"".join(rows)}</table>'


def position_html(symbol: str, equity: pd.DataFrame, fills: pd.DataFrame) -> str:
    """The bot's open position after its last candle: side and quantity, the fill that opened it, the
    last close it was marked at, its unrealised P&L there (fees of the entry counted), cash and equity."""
    if not len(equity):
        return '<p data-testid="bot-position">No candle processed yet.</p>'
    last = equity.iloc[-1]
    position = float(last["position"])
    marked = (
        f"marked at the close {float(last['close']):,.8g} of {utc_minutes(last['time'])}: "
        f"cash {float(last['cash']):,.2f}, equity {float(last['equity']):,.2f}"
    )
    if position == 0 or not len(fills):
        return f'<p data-testid="bot-position">Flat; {html.escape(marked)}.</p>'
    entry = fills.iloc[-1]
    price = float(entry["price"])
    unrealised = position * (float(last["close"]) - price) - float(entry["fee"])
    text = (
        f"{position_text(position)} {symbol} since {utc_minutes(entry['time'])} at {price:,.8g}; "
        f"{marked}; unrealised {unrealised:+,.2f}"
    )
    return f'<p data-testid="bot-position">{html.escape(text)}.</p>'


def fill_columns(fills: pd.DataFrame) -> DataDict:
    """Columns of the fills' source: time (ms, the fill instant), price, ▲ buy / ▼ sell and the hover's
    numbers."""
    sides = [str(s) for s in fills["side"]]
    return {
        "time": to_ms(fills["time"]),
        "price": fills["price"].to_numpy(float),
        "side": sides,
        "quantity": fills["quantity"].to_numpy(float),
        "fee": fills["fee"].to_numpy(float),
        "signal_text": [utc_minutes(t) for t in fills["signal_time"]],
        "marker": [SIGNAL_STYLE[s][0] for s in sides],
        "color": [SIGNAL_STYLE[s][1] for s in sides],
    }


def bot_layout(
    candles: pd.DataFrame, equity: pd.DataFrame, fills: pd.DataFrame, start_equity: float, title: str
) -> GridPlot:
    """The bot's candles with its fills (▲ buy, ▼ sell), over its equity (and buy-and-hold) and
    drawdown: a backtest run's layout with no trades, the fills drawn on its price figure."""
    layout = run_layout(candles, equity, [], start_equity, title)
    figures = {fig.name: cast(figure, fig) for fig, *_ in layout.children}
    price = figures["tcp-bt-price"]
    figures["tcp-bt-drawdown"].xaxis.axis_label = TIME_AXIS
    marks = ColumnDataSource(fill_columns(fills), name="tcp-bot-fills")
    drawn = price.scatter(
        "time", "price", source=marks, marker="marker", size=12, fill_color="color", line_color="white"
    )
    price.add_tools(HoverTool(renderers=[drawn], tooltips=FILL_TIPS, formatters={"@time": "datetime"}))
    return layout


def empty_fills() -> pd.DataFrame:
    """A bot's fills before its first: the columns ``fill_columns`` reads, no rows."""
    return pd.DataFrame(
        {
            "time": pd.to_datetime([], utc=True),
            "seq": np.array([], dtype=int),
            "signal_time": pd.to_datetime([], utc=True),
            "side": [],
            "price": [],
            "quantity": [],
            "fee": [],
        }
    )
