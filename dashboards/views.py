"""The candle chart: history from the database, live updates from Redis, indicators and signals.

``CandleChart`` holds the series and the choices as ``param`` parameters and draws them with Bokeh
(``dashboards.figures``: candles, volume beneath, indicator overlays and sub-panels sharing the time
axis, signal markers). A candle's ``time`` is its close everywhere (TIME.md rule 2); the provisional
candle is drawn hollow, dashed and grey and feeds nothing (rule 7). On 1m it is the one the flow
publishes; on higher timeframes it is derived from that timeframe's 1m parts (``MinuteParts``).
Live messages are streamed into the sources with ``rollover``, so a session's memory stays bounded
however long it runs. Without Redis the chart runs on the database alone: every 5 s it checks for newly
stored candles (and the collectors' status) and says why live updates are off. The data shaping is in
``dashboards.shaping``; the health page in ``dashboards.health`` (re-exported here).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models import ColumnDataSource

from configs.indicators import IndicatorsConfig
from connectors.live_items import candle_channel, provisional_channel
from connectors.redis_fanout import LiveMessage
from dashboards.collectors import CollectorState, collector_states
from dashboards.data import (
    EXCHANGE,
    DashboardData,
    DataUnavailable,
    LiveQueue,
    candle_frame,
    series_channels,
    signal_frame,
)
from dashboards.figures import chart_layout
from dashboards.health import HealthView
from dashboards.shaping import (
    MINUTE,
    MinuteParts,
    chart_columns,
    configured_indicators,
    default_selection,
    has_values,
    indicator_columns,
    placement,
    signal_columns,
    sort_live,
    to_ms,
)
from dashboards.summary import ChartState, empty_html, summary_html
from market.indicators.registry import indicator_spec
from market.timeframes import TIMEFRAMES

__all__ = ["BASE_SOURCES", "CandleChart", "HealthView"]

log = logging.getLogger(__name__)
BASE_SOURCES = ("candles", "provisional", "signals")
CHECK_SECONDS = 5.0
"""How often a session re-reads the collectors' status, and (live updates off) looks for new candles."""


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
        self.db_error: str | None = None
        self.states: list[CollectorState] = []
        self.minute_channels: dict[str, str] = {}
        self.parts = MinuteParts(self.timeframe)
        self.waiting: list[str] = []
        self.redraw = False
        self._generation = -1
        self._checked_at = 0.0
        self._newest_minute: datetime | None = None
        self.summary = pn.pane.HTML(
            "Loading ...", css_classes=["tcp-chart-summary"], sizing_mode="stretch_width"
        )
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["tcp-chart-alert"])
        self.notice = pn.pane.HTML("", visible=False, css_classes=["tcp-empty"], sizing_mode="stretch_width")
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
            self.notice,
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
        tf = self.timeframe
        self.channels, self.redraw = series_channels(self.symbol, tf), False
        self.minute_channels = (
            {}
            if tf == "1m"
            else {
                "candle": candle_channel(EXCHANGE, self.symbol, "1m"),
                "provisional": provisional_channel(EXCHANGE, self.symbol, "1m"),
            }
        )
        if self.queue is not None:
            self.data.live.unregister(self.queue)
        self.queue = self.data.live.register([*self.channels.values(), *self.minute_channels.values()])
        self._generation = self.data.live.status.generation
        self.alert.visible, self.provisional, self.parts = False, None, MinuteParts(tf)
        try:
            frame = self.data.db.candles(self.symbol, tf, self.history)
            values, signals = self._history_of(frame)
            self.db_error = None
        except DataUnavailable as error:
            self._show_error(str(error))
            frame, values, signals = (
                candle_frame([]),
                pd.DataFrame(columns=["time", "indicator", "output", "value"]),
                signal_frame([]),
            )
        self.last_time = frame["time"].iloc[-1].to_pydatetime() if len(frame) else None
        self._draw(frame, values, signals)
        self._load_minutes()
        self._catch_up()
        self._check_database(force=True)
        self._update_summary()

    def _history_of(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not len(frame):
            return pd.DataFrame(columns=["time", "indicator", "output", "value"]), signal_frame([])
        start, end = frame["time"].iloc[0].to_pydatetime(), frame["time"].iloc[-1].to_pydatetime()
        values = self.data.db.indicator_history(self.symbol, self.timeframe, self.indicators, start, end)
        signals = self.data.db.signals(self.symbol, self.timeframe, start - TIMEFRAMES[self.timeframe].length)
        return values, signals

    def _load_minutes(self) -> None:
        """Higher timeframes: the stored 1m candles of the newest interval (its in-progress candle)."""
        if self.timeframe == "1m":
            return
        try:
            newest = self._newest_minute = self.data.db.newest_time(self.symbol, "1m")
            if newest is not None:
                start = TIMEFRAMES[self.timeframe].open_of(newest - MINUTE)
                for row in self.data.db.minutes_between(self.symbol, start, newest):
                    self.parts.add("candle", row)
        except DataUnavailable as error:
            self.db_error = str(error)
        self._show_provisional(self.parts.candle(self.last_time))

    def _catch_up(self) -> None:
        """Candles published but not yet in the database, and the current provisional candle."""
        if not self.data.live.status.connected:
            self.live_error = self.data.live.off_reason()
            return
        channels = [self.channels["candle"], *self.minute_channels.values()]
        if self.timeframe == "1m":
            channels.append(self.channels["provisional"])
        try:
            messages = [
                m
                for channel in channels
                for m in self.data.live.catch_up(channel, 1 if "provisional" in channel else 500)
            ]
            self.live_error = None
        except DataUnavailable as error:
            self.live_error = str(error)
            return
        self.apply(messages)

    def _check_database(self, force: bool = False) -> None:
        """Every ``CHECK_SECONDS``: the collectors' status; a database answering again reloads the series;
        with live updates off, newly stored candles (a new candle of the series reloads it; a new 1m part
        updates the in-progress candle)."""
        now = time.monotonic()
        if not force and now - self._checked_at < CHECK_SECONDS:
            return
        self._checked_at = now
        try:
            self.states = collector_states(self.data.db.collector_health())
            if not force and self.db_error is not None:
                self.reload()
                return
            if force or self.data.live.status.connected:
                return
            newest = self.data.db.newest_time(self.symbol, self.timeframe)
            if newest is not None and (self.last_time is None or newest > self.last_time):
                self.reload()
            elif (
                self.timeframe != "1m" and self.data.db.newest_time(self.symbol, "1m") != self._newest_minute
            ):
                self._load_minutes()
        except DataUnavailable as error:
            self.db_error = str(error)

    def _show_error(self, message: str) -> None:
        self.db_error = message
        self.alert.object, self.alert.visible = message, True

    def _show_provisional(self, candle: dict[str, Any] | None) -> None:
        if candle is self.provisional:
            return
        self.provisional = candle
        shown = candle_frame([] if candle is None else [candle])
        self.sources["provisional"].data = chart_columns(shown, self.timeframe, provisional=True)

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
        # The sources live as long as the session (figures are rebuilt when the series or the indicators
        # change): one model per name in the document, whatever happened to the previous figures.
        candles, live, marks = (self._source(n) for n in BASE_SOURCES)
        candles.data = chart_columns(frame, tf)
        live.data = chart_columns(candle_frame([]), tf, provisional=True)
        marks.data = signal_columns(signals, candles.data["time"], candles.data["close"])
        shown = [label for label in self.indicators if label in self.configured]
        overlays = [
            (label, o)
            for label in shown
            for o in self._outputs(label)
            if placement(self.configured[label], o) == "overlay"
        ]
        panels = [
            label
            for label in shown
            if any(placement(self.configured[label], o) == "panel" for o in self._outputs(label))
        ]
        for label in dict.fromkeys([*(lbl for lbl, _ in overlays), *panels]):
            self._source(label).data = indicator_columns(values, label, self._outputs(label))
        # A sub-panel with no value yet (fewer candles than the warm-up) has no scale: it is drawn once
        # its first value arrives.
        self.waiting = [label for label in panels if len(frame) and not has_values(self.sources[label].data)]
        panels = [label for label in panels if label not in self.waiting]
        self.plot.object = chart_layout(
            f"{self.symbol} {tf} (okx)", tf, self.sources, overlays, panels, self.configured, self._outputs
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
        self.live_error = self.data.live.off_reason()
        messages = self.queue.drain()
        if messages:
            self.apply(messages)
        self._check_database()
        self._update_summary()

    def apply(self, messages: Iterable[LiveMessage]) -> None:
        messages = list(messages)
        minute_kind = {channel: kind for kind, channel in self.minute_channels.items()}
        higher = bool(minute_kind)
        batch = sort_live(
            [m for m in messages if m.channel not in minute_kind],
            self.channels,
            self.last_time,
            None if higher else self.provisional,
        )
        candles, rollover = self.sources["candles"], self.max_rows
        if len(batch.candles):
            candles.stream(chart_columns(batch.candles, self.timeframe), rollover=rollover)
            self.last_time = batch.candles["time"].iloc[-1].to_pydatetime()
        if higher:
            for message in messages:
                if message.channel in minute_kind:
                    self.parts.add(minute_kind[message.channel], message.payload)
            self._show_provisional(self.parts.candle(self.last_time))
        else:
            self._show_provisional(batch.provisional)
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
        now, data = datetime.now(UTC), self.sources["candles"].data
        state = ChartState(
            self.symbol,
            self.timeframe,
            data,
            len(self.sources["signals"].data["time"]),
            self.provisional,
            self.live_error,
            self.waiting,
            self.states,
            self.db_error is None,
        )
        self.summary.object = summary_html(state, now)
        empty = not data["time"] and self.db_error is None
        if empty:
            self.notice.object = empty_html(state, now)
        self.notice.visible = empty

    def close(self) -> None:
        if self.queue is not None:
            self.data.live.unregister(self.queue)
            self.queue = None
