"""The Bokeh figures of the chart: candles over volume, indicator overlays and sub-panels, signals.

Built from the chart's ``ColumnDataSource``s (which outlive the figures), sharing one time axis. Axes
never use scientific notation: prices and indicator values are plain numbers, volumes abbreviated
(``140k``, ``1.4m``). Legends sit above their plot, small and horizontal (click an entry to hide its
line), so they never cover the newest candles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bokeh.layouts import gridplot
from bokeh.models import (
    BasicTickFormatter,
    ColumnDataSource,
    GlyphRenderer,
    GridPlot,
    HoverTool,
    Legend,
    NumeralTickFormatter,
    Span,
)
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


def plain_ticks(name: str) -> BasicTickFormatter:
    """Plain decimal tick labels (no ``e+5``), precision chosen from the tick spacing."""
    return BasicTickFormatter(use_scientific=False, name=name)


def legend_above(fig: figure, items: Sequence[tuple[str, GlyphRenderer]]) -> None:
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
        padding=2,
        margin=0,
        border_line_alpha=0.0,
        background_fill_alpha=0.0,
    )
    fig.add_layout(legend, "above")


def _figure(name: str, height: int, **options: object) -> figure:
    return figure(
        x_axis_type="datetime",
        height=height,
        sizing_mode="stretch_width",
        tools=TOOLS,
        active_scroll="xwheel_zoom",
        name=name,
        **options,
    )


def chart_layout(
    title: str,
    timeframe: str,
    sources: Mapping[str, ColumnDataSource],
    overlays: Sequence[tuple[str, str]],
    panels: Sequence[str],
    configured: Mapping[str, str],
    outputs: Callable[[str], Sequence[str]],
) -> GridPlot:
    """Price (candles, provisional candle, overlays, signals) over volume, then one sub-panel per label."""
    width = TIMEFRAMES[timeframe].length / MS * 0.7
    candles, live, marks = sources["candles"], sources["provisional"], sources["signals"]
    price = _figure("tcp-price", 420, title=title)
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
    lines = []
    for i, (label, output) in enumerate(overlays):
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

    volume = _figure("tcp-volume", 130, x_range=price.x_range)
    volume.vbar(
        "time", width, "volume", 0, source=candles, fill_color="color", line_color="color", fill_alpha=0.6
    )
    volume.vbar(
        "time", width, "volume", 0, source=live, fill_alpha=0.0, line_color="#757575", line_dash="dashed"
    )
    volume.yaxis.axis_label = "Volume"
    volume.yaxis.formatter = NumeralTickFormatter(format=VOLUME_FORMAT, name="tcp-volume-ticks")

    figures = [price, volume]
    for label in panels:
        sub = _figure(f"tcp-panel-{label}", 150, x_range=price.x_range)
        items = []
        for i, output in enumerate(o for o in outputs(label) if placement(configured[label], o) == "panel"):
            if output.endswith("hist"):
                glyph = sub.vbar(
                    "time",
                    width,
                    output,
                    0,
                    source=sources[label],
                    fill_color="#b0bec5",
                    line_color="#b0bec5",
                )
                items.append((output, glyph))
            else:
                glyph = sub.line(
                    "time", output, source=sources[label], color=LINE_COLORS[i % len(LINE_COLORS)]
                )
                items.append((label if output == "value" else output, glyph))
        if configured[label].upper() in BOUNDED_PANELS:
            for level in (30, 70):
                sub.add_layout(
                    Span(location=level, dimension="width", line_dash="dotted", line_color="#9e9e9e")
                )
        sub.yaxis.axis_label = label
        sub.yaxis.formatter = plain_ticks(f"tcp-panel-ticks-{label}")
        legend_above(sub, items)
        figures.append(sub)
    for fig in figures[:-1]:
        fig.xaxis.major_label_text_font_size = "0pt"
    figures[-1].xaxis.axis_label = TIME_AXIS
    return gridplot(
        [[fig] for fig in figures], merge_tools=True, toolbar_location="right", sizing_mode="stretch_width"
    )
