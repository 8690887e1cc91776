"""The Bokeh figures of the chart: candles over volume, indicator overlays and sub-panels, signals.

Pure builders: a ``FigurePlan`` (what to draw, from ``figure_plan``) and the chart's
``ColumnDataSource``s (which outlive the figures) in, a Bokeh layout out, sharing one time axis. Axes
never use scientific notation: prices and indicator values are plain numbers, volumes abbreviated
(``140k``, ``1.4m``). Legends sit above their plot, small and horizontal (click an entry to hide its
line), so they never cover the newest candles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bokeh.layouts import gridplot
from bokeh.models import (
    BasicTickFormatter,
    ColumnDataSource,
    DataRange1d,
    GridPlot,
    HoverTool,
    NumeralTickFormatter,
    Range,
)
from bokeh.models.annotations import Legend, Span
from bokeh.models.renderers import GlyphRenderer
from bokeh.plotting import figure

from dashboards.shaping import LINE_COLORS, MS, TIME_AXIS, placement
from market.timeframes import TIMEFRAMES

TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"
VOLUME_FORMAT = "0.[00]a"
"""Volume ticks: 950, 140k, 1.4m (numeral.js abbreviations), never ``1.400e+5``."""
BOUNDED_PANELS = frozenset({"RSI", "STOCH", "STOCHF", "STOCHRSI", "MFI"})
CANDLE_TIPS = [
    ("Close time (UTC)", "@time{%F %H:%M}"),
    ("Interval", "@interval"),
    ("State", "@state"),
    ("Open", "@open_text"),
    ("High", "@high_text"),
    ("Low", "@low_text"),
    ("Close", "@close_text"),
    ("Volume", "@volume_text"),
    ("Trades", "@trade_count"),
]
SIGNAL_TIPS = [
    ("Signal", "@action (@strategy)"),
    ("Reason", "@reason"),
    ("Candle close (UTC)", "@time{%F %H:%M}"),
]


@dataclass(frozen=True)
class SubPanel:
    """One indicator label's sub-panel: the registered indicator it runs and the outputs drawn in it."""

    label: str
    indicator: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class FigurePlan:
    """What the chart draws: a title, the timeframe (candle width), the overlay lines over the price as
    ``(label, output)`` and the sub-panels beneath the volume, in order."""

    title: str
    timeframe: str
    overlays: tuple[tuple[str, str], ...] = ()
    panels: tuple[SubPanel, ...] = ()

    @property
    def labels(self) -> list[str]:
        """The indicator labels drawn (each has a source of its own), overlays first."""
        return list(dict.fromkeys([*(label for label, _ in self.overlays), *(p.label for p in self.panels)]))


def figure_plan(
    title: str,
    timeframe: str,
    shown: Sequence[str],
    configured: Mapping[str, str],
    outputs: Callable[[str], Sequence[str]],
) -> FigurePlan:
    """The overlays and sub-panels of the labels ``shown`` (those configured), each output placed by
    ``placement``; a label with an output of each kind is drawn in both."""
    labels = [label for label in shown if label in configured]
    overlays = tuple(
        (label, o) for label in labels for o in outputs(label) if placement(configured[label], o) == "overlay"
    )
    panels = tuple(
        SubPanel(
            label,
            configured[label],
            tuple(o for o in outputs(label) if placement(configured[label], o) == "panel"),
        )
        for label in labels
    )
    return FigurePlan(title, timeframe, overlays, tuple(p for p in panels if p.outputs))


def plain_ticks(name: str) -> BasicTickFormatter:
    """Plain decimal tick labels (no ``e+5``), precision chosen from the tick spacing."""
    return BasicTickFormatter(use_scientific=False, name=name)


def legend_above(fig: figure, items: Sequence[tuple[str, GlyphRenderer[Any]]]) -> None:
    """A small horizontal legend above the plot; clicking an entry hides its line."""
    if not items:
        return
    legend = Legend(
        items=[(label, [renderer]) for label, renderer in items],
        orientation="horizontal",
        click_policy="hide",
        location="top_left",
        label_text_font_size="8pt",
        glyph_height=10,
        glyph_width=14,
        label_height=10,
        spacing=8,
        padding=2,  # type: ignore[arg-type]  # Bokeh's stub wraps the accepted int in Property[...]
        margin=0,
        border_line_alpha=0.0,
        background_fill_alpha=0.0,
    )
    fig.add_layout(legend, "above")


def _figure(name: str, height: int, x_range: Range | None = None, title: str = "") -> figure:
    """A datetime figure; ``x_range`` shared with the price figure (one time axis), None for its own."""
    return figure(
        x_axis_type="datetime",
        height=height,
        sizing_mode="stretch_width",
        tools=TOOLS,
        active_scroll="xwheel_zoom",
        name=name,
        x_range=DataRange1d() if x_range is None else x_range,
        title=title,
    )


def price_figure(plan: FigurePlan, sources: Mapping[str, ColumnDataSource], width: float) -> figure:
    """Candles, the provisional candle (hollow, dashed, grey), overlay lines and signal markers."""
    candles, live, marks = sources["candles"], sources["provisional"], sources["signals"]
    price = _figure("tcp-price", 420, title=plan.title)
    price.segment("time", "low", "time", "high", source=candles, line_color="color")
    bodies = price.vbar(
        "time", width, "body_top", "body_bottom", source=candles, fill_color="color", line_color="color"
    )
    price.segment("time", "low", "time", "high", source=live, line_color="#757575", line_dash="dashed")
    hollow = price.vbar(
        "time",
        width,
        "body_top",
        "body_bottom",
        source=live,
        fill_alpha=0.0,
        line_color="#757575",
        line_dash="dashed",
        line_width=2,
    )
    price.add_tools(
        HoverTool(renderers=[bodies, hollow], tooltips=CANDLE_TIPS, formatters={"@time": "datetime"})
    )
    lines: list[tuple[str, GlyphRenderer[Any]]] = []
    for i, (label, output) in enumerate(plan.overlays):
        line = price.line(
            "time", output, source=sources[label], color=LINE_COLORS[i % len(LINE_COLORS)], line_width=1.3
        )
        lines.append((f"{label}.{output}" if output != "value" else label, line))
    legend_above(price, lines)
    signal_glyph = price.scatter(
        "time",
        "price",
        source=marks,
        marker="marker",
        size=13,
        fill_color="color",
        line_color="white",
        name="tcp-signal-markers",
    )
    price.add_tools(
        HoverTool(renderers=[signal_glyph], formatters={"@time": "datetime"}, tooltips=SIGNAL_TIPS)
    )
    price.yaxis.axis_label = "Price"
    price.yaxis.formatter = plain_ticks("tcp-price-ticks")
    return price


def volume_figure(sources: Mapping[str, ColumnDataSource], width: float, x_range: Range) -> figure:
    """Volume bars beneath the candles; the provisional candle's hollow."""
    volume = _figure("tcp-volume", 130, x_range=x_range)
    volume.vbar(
        "time",
        width,
        "volume",
        0,
        source=sources["candles"],
        fill_color="color",
        line_color="color",
        fill_alpha=0.6,
    )
    volume.vbar(
        "time",
        width,
        "volume",
        0,
        source=sources["provisional"],
        fill_alpha=0.0,
        line_color="#757575",
        line_dash="dashed",
    )
    volume.yaxis.axis_label = "Volume"
    volume.yaxis.formatter = NumeralTickFormatter(format=VOLUME_FORMAT, name="tcp-volume-ticks")
    return volume


def panel_figure(panel: SubPanel, source: ColumnDataSource, width: float, x_range: Range) -> figure:
    """One label's sub-panel: a line per output (histograms as bars), 30/70 guides when bounded."""
    sub = _figure(f"tcp-panel-{panel.label}", 150, x_range=x_range)
    items: list[tuple[str, GlyphRenderer[Any]]] = []
    for i, output in enumerate(panel.outputs):
        if output.endswith("hist"):
            bars = sub.vbar(
                "time", width, output, 0, source=source, fill_color="#b0bec5", line_color="#b0bec5"
            )
            items.append((output, bars))
        else:
            line = sub.line("time", output, source=source, color=LINE_COLORS[i % len(LINE_COLORS)])
            items.append((panel.label if output == "value" else output, line))
    if panel.indicator.upper() in BOUNDED_PANELS:
        for level in (30, 70):
            sub.add_layout(Span(location=level, dimension="width", line_dash="dotted", line_color="#9e9e9e"))
    sub.yaxis.axis_label = panel.label
    sub.yaxis.formatter = plain_ticks(f"tcp-panel-ticks-{panel.label}")
    legend_above(sub, items)
    return sub


def chart_layout(plan: FigurePlan, sources: Mapping[str, ColumnDataSource]) -> GridPlot:
    """Price (candles, provisional candle, overlays, signals) over volume, then one sub-panel per label;
    ``sources`` holds ``candles``, ``provisional``, ``signals`` and one source per label of the plan."""
    width = TIMEFRAMES[plan.timeframe].length / MS * 0.7
    price = price_figure(plan, sources, width)
    figures = [price, volume_figure(sources, width, price.x_range)]
    figures += [panel_figure(p, sources[p.label], width, price.x_range) for p in plan.panels]
    for fig in figures[:-1]:
        fig.xaxis.major_label_text_font_size = "0pt"
    figures[-1].xaxis.axis_label = TIME_AXIS
    return gridplot(
        [[fig] for fig in figures], merge_tools=True, toolbar_location="right", sizing_mode="stretch_width"
    )
