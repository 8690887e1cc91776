"""The candle chart: history from the database, live updates from Redis, indicators and signals.

``CandleChart`` holds the series and the choices as ``param`` parameters and draws them with Bokeh
(candles, volume beneath, indicator overlays and sub-panels sharing the time axis, signal markers).
A candle's ``time`` is its close everywhere (TIME.md rule 2); the provisional candle is drawn hollow,
dashed and grey and feeds nothing (rule 7). Live messages are streamed into the sources with
``rollover``, so a session's memory stays bounded however long it runs. The data shaping is in
``dashboards.shaping``; the health page in ``dashboards.health`` (both re-exported here).
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource, HoverTool, Span
from bokeh.plotting import figure

from configs.indicators import IndicatorsConfig
from connectors.redis_fanout import LiveMessage
from dashboards.data import (
    DashboardData,
    DataUnavailable,
    LiveQueue,
    candle_frame,
    series_channels,
    signal_frame,
)
from dashboards.health import HealthView
from dashboards.shaping import (
    LINE_COLORS,
    MS,
    TIME_AXIS,
    chart_columns,
    configured_indicators,
    default_selection,
    has_values,
    indicator_columns,
    placement,
    signal_columns,
    sort_live,
    to_ms,
    utc_text,
)
from market.indicators.registry import indicator_spec
from market.timeframes import TIMEFRAMES

__all__ = ["BASE_SOURCES", "CandleChart", "HealthView"]

log = logging.getLogger(__name__)
BASE_SOURCES = ("candles", "provisional", "signals")


class CandleChart(pn.viewable.Viewer):
    """Candles of one series with volume, indicator overlays and sub-panels, signals and the live candle."""

    symbol = param.Selector(objects=[], label="Instrument")
    timeframe = param.Selector(default="1m", objects=list(TIMEFRAMES), label="Timeframe")
    history = param.Selector(default=1000, objects=[200, 500, 1000, 2000, 5000], label="Candles loaded")
    indicators = param.ListSelector(default=[], objects=[], label="Indicators shown")
    max_rows = param.Integer(default=6000, bounds=(10, None), doc="Rollover bound of every live source")

    def __init__(
        self,
        data: DashboardData,
        instruments: Sequence[str],
        indicator_config: IndicatorsConfig,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.data, self.config = data, indicator_config
        self.param.symbol.objects = list(instruments)
        self.symbol = params.get("symbol", instruments[0])
        self.queue: LiveQueue | None = None
        self.channels: dict[str, str] = {}
        self.sources: dict[str, ColumnDataSource] = {}
        self.configured: dict[str, str] = {}
        self.last_time: datetime | None = None
        self.provisional: dict[str, Any] | None = None
        self.live_error: str | None = None
        self.waiting: list[str] = []
        self.redraw = False
        self._generation = -1
        self.summary = pn.pane.HTML(
            "Loading ...", css_classes=["tcp-chart-summary"], sizing_mode="stretch_width"
        )
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["tcp-chart-alert"])
        self.plot = pn.pane.Bokeh(sizing_mode="stretch_width", css_classes=["tcp-chart"])
        self._choose_indicators()
        self.param.watch(self._series_changed, ["symbol", "timeframe"])
        self.param.watch(lambda _: self.reload(), ["history", "indicators"])
        self.reload()

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.symbol, width=170, css_classes=["tcp-instrument"]),
            pn.widgets.RadioButtonGroup.from_param(
                self.param.timeframe, name="Timeframe", css_classes=["tcp-timeframe"], margin=(26, 10, 10, 10)
            ),
            pn.widgets.Select.from_param(self.param.history, width=130, css_classes=["tcp-history"]),
        )
        picker = pn.widgets.CheckButtonGroup.from_param(self.param.indicators, css_classes=["tcp-indicators"])
        return pn.Column(
            controls,
            pn.Row(pn.pane.HTML("<b>Indicators</b>", margin=(12, 5)), picker),
            self.summary,
            self.alert,
            self.plot,
            sizing_mode="stretch_width",
        )

    def _choose_indicators(self) -> None:
        self.configured = configured_indicators(self.config, self.symbol, self.timeframe)
        keep = [label for label in self.indicators if label in self.configured]
        self.param.indicators.objects = list(self.configured)
        with param.parameterized.discard_events(self):
            self.indicators = keep or default_selection(self.configured)

    def _series_changed(self, _: Any) -> None:
        self._choose_indicators()
        self.reload()

    # -- loading --------------------------------------------------------------------------------
    def reload(self) -> None:
        """Follow the series live (first, so nothing is missed), then load its history and draw it."""
        self.channels, self.redraw = series_channels(self.symbol, self.timeframe), False
        if self.queue is not None:
            self.data.live.unregister(self.queue)
        self.queue = self.data.live.register(self.channels.values())
        self._generation = self.data.live.status.generation
        self.alert.visible, self.provisional = False, None
        try:
            frame = self.data.db.candles(self.symbol, self.timeframe, self.history)
            values, signals = self._history_of(frame)
        except DataUnavailable as error:
            self._show_error(str(error))
            frame, values, signals = (
                candle_frame([]),
                pd.DataFrame(columns=["time", "indicator", "output", "value"]),
                signal_frame([]),
            )
        self.last_time = frame["time"].iloc[-1].to_pydatetime() if len(frame) else None
        self._draw(frame, values, signals)
        self._catch_up()
        self._update_summary()

    def _history_of(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not len(frame):
            return pd.DataFrame(columns=["time", "indicator", "output", "value"]), signal_frame([])
        start, end = frame["time"].iloc[0].to_pydatetime(), frame["time"].iloc[-1].to_pydatetime()
        values = self.data.db.indicator_history(self.symbol, self.timeframe, self.indicators, start, end)
        signals = self.data.db.signals(self.symbol, self.timeframe, start - TIMEFRAMES[self.timeframe].length)
        return values, signals

    def _catch_up(self) -> None:
        """Candles published but not yet in the database, and the current provisional candle."""
        try:
            messages = [
                *self.data.live.catch_up(self.channels["candle"], 500),
                *self.data.live.catch_up(self.channels["provisional"], 1),
            ]
            self.live_error = None
        except DataUnavailable as error:
            self.live_error = str(error)
            return
        self.apply(messages)

    def _show_error(self, message: str) -> None:
        self.alert.object, self.alert.visible = message, True

    # -- drawing --------------------------------------------------------------------------------
    def _source(self, key: str) -> ColumnDataSource:
        if key not in self.sources:
            self.sources[key] = ColumnDataSource(
                name=f"tcp-{key}" if key in BASE_SOURCES else f"tcp-indicator-{key}"
            )
        return self.sources[key]

    def _outputs(self, label: str) -> tuple[str, ...]:
        return indicator_spec(self.configured[label]).outputs

    def _draw(self, frame: pd.DataFrame, values: pd.DataFrame, signals: pd.DataFrame) -> None:
        tf = self.timeframe
        width = TIMEFRAMES[tf].length / MS * 0.7
        # The sources live as long as the session (figures are rebuilt when the series or the indicators
        # change): one model per name in the document, whatever happened to the previous figures.
        candles, live, marks = (self._source(n) for n in ("candles", "provisional", "signals"))
        candles.data = chart_columns(frame, tf)
        live.data = chart_columns(candle_frame([]), tf, provisional=True)
        marks.data = signal_columns(signals, candles.data["time"], candles.data["close"])
        tools = "xpan,xwheel_zoom,box_zoom,reset,save"
        price = figure(
            x_axis_type="datetime",
            height=420,
            sizing_mode="stretch_width",
            tools=tools,
            active_scroll="xwheel_zoom",
            title=f"{self.symbol} {tf} (okx)",
            name="tcp-price",
        )
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
        fields = [
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
        price.add_tools(
            HoverTool(renderers=[bodies, hollow], tooltips=fields, formatters={"@time": "datetime"})
        )
        overlays = [
            (label, o)
            for label in self.indicators
            if label in self.configured
            for o in self._outputs(label)
            if placement(self.configured[label], o) == "overlay"
        ]
        panels = [
            label
            for label in self.indicators
            if label in self.configured
            and any(placement(self.configured[label], o) == "panel" for o in self._outputs(label))
        ]
        for label in dict.fromkeys([*(lbl for lbl, _ in overlays), *panels]):
            self._source(label).data = indicator_columns(values, label, self._outputs(label))
        # A sub-panel with no value yet (fewer candles than the warm-up) has no scale: it is drawn once
        # its first value arrives.
        self.waiting = [label for label in panels if len(frame) and not has_values(self.sources[label].data)]
        panels = [label for label in panels if label not in self.waiting]
        for i, (label, output) in enumerate(overlays):
            price.line(
                "time",
                output,
                source=self.sources[label],
                color=LINE_COLORS[i % len(LINE_COLORS)],
                legend_label=f"{label}.{output}" if output != "value" else label,
                line_width=1.3,
            )
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
            HoverTool(
                renderers=[signal_glyph],
                formatters={"@time": "datetime"},
                tooltips=[
                    ("Signal", "@action (@strategy)"),
                    ("Reason", "@reason"),
                    ("Candle close (UTC)", "@time{%F %H:%M}"),
                ],
            )
        )
        if overlays:
            price.legend.location, price.legend.click_policy = "top_left", "hide"
        price.yaxis.axis_label = "Price"
        volume = figure(
            x_axis_type="datetime",
            x_range=price.x_range,
            height=130,
            sizing_mode="stretch_width",
            tools=tools,
            active_scroll="xwheel_zoom",
            name="tcp-volume",
        )
        volume.vbar(
            "time", width, "volume", 0, source=candles, fill_color="color", line_color="color", fill_alpha=0.6
        )
        volume.vbar(
            "time", width, "volume", 0, source=live, fill_alpha=0.0, line_color="#757575", line_dash="dashed"
        )
        volume.yaxis.axis_label = "Volume"
        figures = [price, volume]
        for label in panels:
            sub = figure(
                x_axis_type="datetime",
                x_range=price.x_range,
                height=150,
                sizing_mode="stretch_width",
                tools=tools,
                active_scroll="xwheel_zoom",
                name=f"tcp-panel-{label}",
            )
            for i, output in enumerate(
                o for o in self._outputs(label) if placement(self.configured[label], o) == "panel"
            ):
                color = LINE_COLORS[i % len(LINE_COLORS)]
                if output.endswith("hist"):
                    sub.vbar(
                        "time",
                        width,
                        output,
                        0,
                        source=self.sources[label],
                        fill_color="#b0bec5",
                        line_color="#b0bec5",
                        legend_label=output,
                    )
                else:
                    sub.line(
                        "time",
                        output,
                        source=self.sources[label],
                        color=color,
                        legend_label=label if output == "value" else output,
                    )
            if self.configured[label].upper() in {"RSI", "STOCH", "STOCHF", "STOCHRSI", "MFI"}:
                for level in (30, 70):
                    sub.add_layout(
                        Span(location=level, dimension="width", line_dash="dotted", line_color="#9e9e9e")
                    )
            sub.yaxis.axis_label = label
            sub.legend.location = "top_left"
            figures.append(sub)
        for fig in figures[:-1]:
            fig.xaxis.major_label_text_font_size = "0pt"
        figures[-1].xaxis.axis_label = TIME_AXIS
        self.plot.object = gridplot(
            [[fig] for fig in figures],
            merge_tools=True,
            toolbar_location="right",
            sizing_mode="stretch_width",
        )

    # -- live -----------------------------------------------------------------------------------
    def poll_live(self) -> None:
        """Drain this session's live queue into the chart (run by a periodic callback)."""
        if self.queue is None:
            return
        status = self.data.live.status
        if (
            self.redraw
            or self.queue.overflowed
            or (status.connected and status.generation != self._generation)
        ):
            self.reload()  # missed messages: history again from the database, then live
            return
        self.live_error = (
            None if status.connected else "Redis is unreachable; live updates resume when it answers."
        )
        messages = self.queue.drain()
        if messages:
            self.apply(messages)
        self._update_summary()

    def apply(self, messages: Iterable[LiveMessage]) -> None:
        batch = sort_live(messages, self.channels, self.last_time, self.provisional)
        candles, rollover = self.sources["candles"], self.max_rows
        if len(batch.candles):
            candles.stream(chart_columns(batch.candles, self.timeframe), rollover=rollover)
            self.last_time = batch.candles["time"].iloc[-1].to_pydatetime()
        if batch.provisional is not self.provisional:
            self.provisional = batch.provisional
            shown = candle_frame([] if batch.provisional is None else [batch.provisional])
            self.sources["provisional"].data = chart_columns(shown, self.timeframe, provisional=True)
        for payload in batch.indicators:
            source = (
                self.sources.get(payload["indicator"]) if payload["indicator"] in self.indicators else None
            )
            if source is not None and (
                not source.data["time"] or to_ms([payload["time"]])[0] > source.data["time"][-1]
            ):
                row = {"time": to_ms([payload["time"]]).tolist()}
                row |= {
                    k: [math.nan if payload["values"].get(k) is None else float(payload["values"][k])]
                    for k in source.data
                    if k != "time"
                }
                source.stream(row, rollover=rollover)
                if payload["indicator"] in self.waiting and has_values(row):
                    self.redraw = True
        marks = self.sources["signals"]
        known = set(zip(marks.data["time"][-100:], marks.data["strategy"][-100:], strict=True))
        fresh = [s for s in batch.signals if (to_ms([s["time"]])[0], s["strategy"]) not in known]
        if fresh:
            marks.stream(
                signal_columns(signal_frame(fresh), candles.data["time"], candles.data["close"]),
                rollover=rollover,
            )

    def _update_summary(self) -> None:
        data = self.sources["candles"].data
        n = len(data["time"])
        last = (
            f'<span data-testid="last-close">{html.escape(data["close_text"][-1])}</span> '
            f'(candle closing <span data-testid="last-close-time">{utc_text(data["time"][-1])}</span> UTC)'
            if n
            else '<span data-testid="last-close">none</span>'
        )
        p = self.provisional
        prov = (
            "none"
            if p is None
            else f'<span data-testid="provisional-close">{html.escape(format(p["close"], "f"))}</span> '
            f"(in progress, closes {p['time']:%H:%M} UTC, as of {p['as_of']:%H:%M:%S} UTC)"
        )
        live = self.live_error or "following Redis"
        self.summary.object = (
            f'<div class="tcp-summary"><b>{html.escape(self.symbol)} {self.timeframe}</b> &middot; '
            f'<span data-testid="candle-count">Candles: {n}</span> &middot; Last close: {last} &middot; '
            f'<span data-testid="signal-count">Signals: {len(self.sources["signals"].data["time"])}</span>'
            f'<br>Provisional: <span data-testid="provisional">{prov}</span> &middot; '
            f'<span data-testid="live-status">Live: {html.escape(live)}</span>'
            + (
                f'<br><span data-testid="waiting">No values yet (warm-up): {", ".join(self.waiting)}</span>'
                if self.waiting
                else ""
            )
            + "</div>"
        )

    def close(self) -> None:
        if self.queue is not None:
            self.data.live.unregister(self.queue)
            self.queue = None
