"""The chart's figure builder without a browser: what a plan draws and the figures it makes."""

from __future__ import annotations

from bokeh.models import ColumnDataSource, Legend, Span

from dashboards.data import candle_frame
from dashboards.figures import FigurePlan, SubPanel, chart_layout, figure_plan
from dashboards.shaping import chart_columns, configured_indicators
from market.indicators.registry import indicator_spec
from tests.dashboards.chart_kit import CONFIG, MINUTE, T0, payload

CONFIGURED = configured_indicators(CONFIG, "BTC-USDT", "1m")


def outputs(label: str) -> tuple[str, ...]:
    return indicator_spec(CONFIGURED[label]).outputs


def test_plan_puts_price_outputs_over_the_candles_and_the_others_in_sub_panels() -> None:
    plan = figure_plan(
        "BTC-USDT 1m (okx)", "1m", ["ema_fast", "bbands", "rsi", "macd", "nope"], CONFIGURED, outputs
    )
    assert plan.overlays == (
        ("ema_fast", "value"),
        ("bbands", "upperband"),
        ("bbands", "middleband"),
        ("bbands", "lowerband"),
    )
    assert plan.panels == (
        SubPanel("rsi", "RSI", ("value",)),
        SubPanel("macd", "MACD", ("macd", "macdsignal", "macdhist")),
    )
    assert plan.labels == ["ema_fast", "bbands", "rsi", "macd"]  # an unconfigured label is not drawn


def test_layout_draws_price_volume_and_one_figure_per_sub_panel_on_one_time_axis() -> None:
    plan = FigurePlan(
        "BTC-USDT 1m (okx)", "1m", (("ema_fast", "value"),), (SubPanel("rsi", "RSI", ("value",)),)
    )
    columns = chart_columns(candle_frame([payload(T0, "1"), payload(T0 + MINUTE, "2")]), "1m")
    sources = {
        "candles": ColumnDataSource(columns, name="tcp-candles"),
        "provisional": ColumnDataSource(chart_columns(candle_frame([]), "1m", provisional=True)),
        "signals": ColumnDataSource(
            {k: [] for k in ("time", "price", "marker", "color", "action", "strategy")}
        ),
        "ema_fast": ColumnDataSource({"time": columns["time"], "value": [1.0, 1.5]}),
        "rsi": ColumnDataSource({"time": columns["time"], "value": [40.0, 60.0]}),
    }
    layout = chart_layout(plan, sources)
    figures = [child[0] for child in layout.children]
    assert [f.name for f in figures] == ["tcp-price", "tcp-volume", "tcp-panel-rsi"]
    assert figures[0].title.text == "BTC-USDT 1m (okx)"
    assert all(f.x_range is figures[0].x_range for f in figures)
    assert [f.xaxis[0].axis_label for f in figures][-1].startswith("Candle close time (UTC)")
    legends = [a for a in figures[0].above if isinstance(a, Legend)]
    assert [item.label["value"] for item in legends[0].items] == ["ema_fast"]  # above the plot, not inside
    assert sorted(s.location for s in figures[2].center if isinstance(s, Span)) == [30, 70]  # RSI guides
