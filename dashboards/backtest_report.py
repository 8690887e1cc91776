"""The standalone report of a backtest run: one HTML file that opens offline, with no server.

``write_report(path, view)`` saves a Panel layout with every resource inlined (Bokeh, Panel and the data):
the title and series, the metrics table, price with the trades (entry and exit markers, hover with the
trade's numbers), equity with buy-and-hold, drawdown, the monthly returns as a heat map, and the run's
configuration. ``run_panel(view)`` is the same layout, which the dashboard's Backtests page shows for a
stored run: the report and the page draw a run with one figure code (``dashboards.backtest_figures``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
from bokeh.document import Document
from bokeh.models import ImportedStyleSheet, InlineStyleSheet
from bokeh.models.ui import StyledElement
from bokeh.resources import INLINE
from panel.io.resources import CDN_DIST
from panel.io.save import save

from dashboards.backtest_figures import metrics_html, monthly_html, monthly_returns, run_layout, utc_minutes

__all__ = ["BacktestView", "run_panel", "write_report"]

PANEL_DIST = Path(pn.__file__).parent / "dist"
CANDLE_COLUMNS = ("time", "open", "high", "low", "close", "volume")
EQUITY_COLUMNS = ("time", "close", "cash", "position", "equity")
STYLE = """
.tcp-bt-metrics, .tcp-bt-monthly { border-collapse: collapse; font-size: 13px; }
.tcp-bt-metrics th, .tcp-bt-metrics td, .tcp-bt-monthly th, .tcp-bt-monthly td {
  padding: 2px 8px; border-bottom: 1px solid #e0e0e0; text-align: right; }
.tcp-bt-metrics th { text-align: left; font-weight: normal; color: #455a64; }
.tcp-bt-title { font-size: 18px; font-weight: 600; margin: 6px 0 2px 0; }
.tcp-bt-heading { font-size: 14px; font-weight: 600; margin: 8px 0 2px 0; }
"""


@dataclass(frozen=True)
class BacktestView:
    """One run as the report and the dashboard draw it.

    ``candles``: ``time`` (the close, tz-aware UTC), ``open``, ``high``, ``low``, ``close``, ``volume``;
    ``equity``: ``time`` (candle close), ``close``, ``cash``, ``position``, ``equity`` (every point; or
    the last point of each period with ``drawdown``, that period's deepest, as the page reads a long
    run); ``trades``: the
    JSON trade dicts (``entry_time``, ``entry_price``, ``exit_time``, ``exit_price``, ``quantity``,
    ``pnl``, ``fees``, ``side``, ``open``; times ISO 8601 text or datetimes); ``metrics``: those of
    ``market.backtest.compute_metrics``; ``config``: the run's configuration as stored."""

    title: str
    candles: pd.DataFrame
    equity: pd.DataFrame
    trades: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, frame, columns in (
            ("candles", self.candles, CANDLE_COLUMNS),
            ("equity", self.equity, EQUITY_COLUMNS),
        ):
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"BacktestView.{name} lacks the columns {missing}")
            if len(frame) and getattr(frame["time"].dtype, "tz", None) is None:
                raise ValueError(f"BacktestView.{name}.time must be timezone-aware UTC")

    @property
    def start_equity(self) -> float:
        """The starting cash (``metrics["start_equity"]``, else the first equity point)."""
        value = self.metrics.get("start_equity")
        if value is None:
            value = self.equity["equity"].iloc[0] if len(self.equity) else 0.0
        return float(value)


def heading(text: str) -> pn.pane.HTML:
    """A section heading of a run, the same size in the report and inside the dashboard's template."""
    return pn.pane.HTML(f'<div class="tcp-bt-heading">{html.escape(text)}</div>', stylesheets=[STYLE])


def _range_text(view: BacktestView) -> str:
    start, end = view.metrics.get("start"), view.metrics.get("end")
    if start is None and len(view.candles):
        start = view.candles["time"].iloc[0]
    if end is None and len(view.candles):
        end = view.candles["time"].iloc[-1]
    return f"{utc_minutes(start)} to {utc_minutes(end)}"


def run_panel(view: BacktestView, *, figures: bool = True) -> pn.Column:
    """The run's layout: heading, metrics beside the monthly returns, the figures, the configuration."""
    title = pn.pane.HTML(
        f'<div class="tcp-bt-title">{html.escape(view.title)}</div>'
        f"<p>{_range_text(view)}; {len(view.candles):,} candles, {len(view.trades):,} trades</p>",
        sizing_mode="stretch_width",
        stylesheets=[STYLE],
    )
    metrics = pn.pane.HTML(metrics_html(view.metrics), stylesheets=[STYLE], name="Metrics")
    monthly = pn.pane.HTML(
        monthly_html(monthly_returns(view.equity, view.start_equity)), stylesheets=[STYLE], name="Monthly"
    )
    parts: list[Any] = [title]
    if figures and len(view.candles):
        plot = run_layout(view.candles, view.equity, view.trades, view.start_equity, view.title)
        parts.append(pn.pane.Bokeh(plot, sizing_mode="stretch_width"))
    parts += [
        pn.FlexBox(  # side by side when there is room, else one above the other
            pn.Column(heading("Metrics"), metrics),
            pn.Column(heading("Monthly returns"), monthly),
            sizing_mode="stretch_width",
        ),
        heading("Configuration"),
        pn.pane.JSON(view.config, depth=-1, name="Configuration"),
    ]
    return pn.Column(*parts, sizing_mode="stretch_width", css_classes=["tcp-backtest-run"])


def write_report(path: Path, run: BacktestView) -> None:
    """Write the run's standalone HTML report to ``path``: every script and the data inlined, so it opens
    offline in any browser, with no server."""
    doc = Document()
    doc.add_root(run_panel(run).get_root(doc))
    for model in list(doc.models):
        if isinstance(model, StyledElement) and model.stylesheets:
            model.stylesheets = [_inlined(sheet) for sheet in model.stylesheets]
    save(doc, Path(path), title=run.title, resources=INLINE)


def _inlined(sheet: Any) -> Any:
    """A stylesheet of Panel's distribution that the page would fetch from its CDN, as inline CSS (the
    report opens offline); any other sheet as it is."""
    url = sheet.url if isinstance(sheet, ImportedStyleSheet) else ""
    if not url.startswith(CDN_DIST):
        return sheet
    local = PANEL_DIST / url.removeprefix(CDN_DIST).split("?", 1)[0]
    return InlineStyleSheet(css=local.read_text(encoding="utf-8")) if local.is_file() else sheet
