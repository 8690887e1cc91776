"""The chart's data store: the selected series, its data and what the page should say about it.

``ChartStore`` holds the choices (instrument, timeframe, history, indicators) as ``param`` parameters
and the series' data as Bokeh ``ColumnDataSource``s (named ``tcp-candles``, ``tcp-provisional``,
``tcp-signals``, ``tcp-indicator-<label>``; they outlive the figures). Choosing a series follows it live
first (so nothing is missed), then loads its history from the database. The periodic callback
``poll_live`` drains the session's live queue into the sources with ``stream(..., rollover=max_rows)``,
so a session's memory stays bounded however long it runs. Without Redis, every ``CHECK_SECONDS`` it
looks for newly stored candles (and re-reads the collectors' status) and says why live updates are off.
The picker offers the configured indicators and the series' user indicators (re-read every
``CHECK_SECONDS``); a shown one without values yet (just added: the flow computes its history) is looked
for every ``PENDING_SECONDS`` and drawn once stored.

What the view shows is published as parameters: ``plan`` (what the figures draw: ``dashboards.figures``),
``state`` (the summary: ``dashboards.summary``) and ``load_error`` (why the history could not be read).
A candle's ``time`` is its close (TIME.md rule 2); the provisional candle feeds nothing (rule 7). On 1m it
is the one the flow publishes; on higher timeframes it is derived from that timeframe's 1m parts
(``MinuteParts``). No Panel pane lives here: the store is tested without a page.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pandas as pd
import param
from bokeh.models import ColumnDataSource

from configs.indicators import IndicatorsConfig
from connectors.redis_codec import candle_channel, provisional_channel
from connectors.redis_reader import LiveMessage
from dashboards.collectors import CollectorState, collector_states
from dashboards.data import (
    DashboardData,
    DataUnavailable,
    LiveQueue,
    candle_frame,
    series_channels,
    signal_frame,
    split_series,
)
from dashboards.figures import FigurePlan, figure_plan
from dashboards.shaping import (
    MINUTE,
    LiveBatch,
    MinuteParts,
    chart_columns,
    columns,
    configured_indicators,
    default_selection,
    has_values,
    indicator_columns,
    indicator_row,
    signal_columns,
    sort_live,
    to_ms,
    user_labels,
)
from dashboards.summary import ChartState
from market.indicators.registry import indicator_spec
from market.timeframes import TIMEFRAMES

BASE_SOURCES = ("candles", "provisional", "signals")
CHECK_SECONDS = 5.0
"""How often a session re-reads the collectors' status and user indicators (live off: new candles)."""
PENDING_SECONDS = 1.0
"""How often a session looks for the first stored values of a shown user indicator that has none."""
NO_VALUES = ("time", "indicator", "output", "value")


class ChartStore(param.Parameterized):
    """One session's series: the choices, the data sources, the live queue and the chart's state."""

    symbol: param.Selector[str] = param.Selector(objects=[], label="Instrument")
    timeframe: param.Selector[str] = param.Selector(default="1m", objects=list(TIMEFRAMES), label="Timeframe")
    history: param.Selector[int] = param.Selector(
        default=1000, objects=[200, 500, 1000, 2000, 5000], label="Candles loaded"
    )
    indicators = param.ListSelector(default=[], objects=[], label="Indicators shown")
    max_rows = param.Integer(default=6000, bounds=(10, None), doc="Rollover bound of every live source")

    plan: param.ClassSelector[FigurePlan | None] = param.ClassSelector(
        class_=FigurePlan, allow_None=True, doc="What the figures draw; set anew at each (re)load"
    )
    state: param.ClassSelector[ChartState | None] = param.ClassSelector(
        class_=ChartState, allow_None=True, doc="What the summary says; set anew at each load and poll"
    )
    load_error = param.String(default=None, allow_None=True, doc="Why the history could not be read")

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
        self.minute_channels: dict[str, str] = {}
        self.sources: dict[str, ColumnDataSource] = {}
        self.configured: dict[str, str] = {}  # configured label -> its indicator
        self.user: dict[str, dict[str, Any]] = {}  # user indicator label -> its entry
        self.labels: dict[str, str] = {}  # what the picker offers: both, label -> indicator
        self.pending: list[str] = []  # shown user indicators without a stored value yet
        self._pending_at = 0.0
        self._span: tuple[datetime, datetime] | None = None
        self.last_time: datetime | None = None
        self.provisional: dict[str, Any] | None = None
        self.live_error: str | None = None
        self.db_error: str | None = None
        self.states: list[CollectorState] = []
        self.parts = MinuteParts(self.timeframe)
        self.waiting: list[str] = []
        self.redraw = False
        self._generation = -1
        self._checked_at = 0.0
        self._newest_minute: datetime | None = None
        self._choose_indicators()
        self.param.watch(self._series_changed, ["symbol", "timeframe"])
        self.param.watch(lambda _: self.reload(), ["history", "indicators"])
        self.reload()

    def _choose_indicators(self) -> None:
        self.configured = configured_indicators(self.config, self.symbol, self.timeframe)
        self.user = self._read_user()
        self._offer()

    def _offer(self, select: str | None = None) -> None:
        """The picker's labels (configured and user); the shown ones still offered (and ``select``)."""
        self.labels = user_labels(self.configured, self.user)
        keep = [label for label in self.indicators if label in self.labels]
        if select in self.labels and select not in keep:
            keep.append(select)
        self.param.indicators.objects = list(self.labels)
        with param.parameterized.discard_events(self):
            self.indicators = keep or default_selection(self.configured)

    def _read_user(self) -> dict[str, dict[str, Any]]:
        try:
            return self.data.db.user_indicators(self.symbol, self.timeframe)
        except DataUnavailable as error:
            self.db_error = str(error)
            return {}

    def refresh_user_indicators(self, select: str | None = None) -> None:
        """Read the series' user indicators again; if they changed (one was added or removed, here or
        elsewhere) offer them and reload, showing ``select``."""
        user = self._read_user()
        if user == self.user and (select is None or select in self.indicators):
            return
        self.user = user
        self._offer(select)
        self.reload()

    def _series_changed(self, _: Any) -> None:
        self._choose_indicators()
        self.reload()

    def _outputs(self, label: str) -> tuple[str, ...]:
        return indicator_spec(self.labels[label]).outputs

    # -- loading --------------------------------------------------------------------------------
    def reload(self) -> None:
        """Follow the series live (first, so nothing is missed), then load its history and show it."""
        self._follow()
        self.load_error, self.provisional, self.parts = None, None, MinuteParts(self.timeframe)
        try:
            frame = self.data.db.candles(self.symbol, self.timeframe, self.history)
            values, signals = self._history_of(frame)
            self.db_error = None
        except DataUnavailable as error:
            self.db_error = self.load_error = str(error)
            frame, values, signals = candle_frame([]), pd.DataFrame(columns=NO_VALUES), signal_frame([])
        self.last_time = frame["time"].iloc[-1].to_pydatetime() if len(frame) else None
        self._span = (frame["time"].iloc[0].to_pydatetime(), self.last_time) if self.last_time else None
        self._show_history(frame, values, signals)
        self._load_minutes()
        self._catch_up()
        self._check_database(force=True)
        self._publish_state()

    def _follow(self) -> None:
        """Register this session's live queue for the series' channels (and above 1m its 1m parts')."""
        self.channels, self.redraw = series_channels(self.symbol, self.timeframe), False
        self.minute_channels = (
            {}
            if self.timeframe == "1m"
            else {
                "candle": candle_channel(*split_series(self.symbol), "1m"),
                "provisional": provisional_channel(*split_series(self.symbol), "1m"),
            }
        )
        if self.queue is not None:
            self.data.live.unregister(self.queue)
        self.queue = self.data.live.register([*self.channels.values(), *self.minute_channels.values()])
        self._generation = self.data.live.status.generation

    def _history_of(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not len(frame):
            return pd.DataFrame(columns=NO_VALUES), signal_frame([])
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
            if not force:
                self.refresh_user_indicators()
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

    # -- the sources ----------------------------------------------------------------------------
    def _source(self, key: str) -> ColumnDataSource:
        if key not in self.sources:
            self.sources[key] = ColumnDataSource(
                name=f"tcp-{key}" if key in BASE_SOURCES else f"tcp-indicator-{key}"
            )
        return self.sources[key]

    def _show_history(self, frame: pd.DataFrame, values: pd.DataFrame, signals: pd.DataFrame) -> None:
        """The loaded history into the sources, and a new ``plan`` for the figures."""
        tf = self.timeframe
        # The sources live as long as the session (figures are rebuilt when the series or the indicators
        # change): one model per name in the document, whatever happened to the previous figures.
        candles, live, marks = (self._source(n) for n in BASE_SOURCES)
        candles.data = chart_columns(frame, tf)
        live.data = chart_columns(candle_frame([]), tf, provisional=True)
        marks.data = signal_columns(signals, columns(candles)["time"], columns(candles)["close"])
        plan = figure_plan(f"{self.symbol} {tf} (okx)", tf, self.indicators, self.labels, self._outputs)
        for label in plan.labels:
            self._source(label).data = indicator_columns(values, label, self._outputs(label))
        self.pending = [
            label
            for label in plan.labels
            if label in self.user and not has_values(columns(self.sources[label]))
        ]
        # A sub-panel with no value yet (fewer candles than the warm-up) has no scale: it is drawn once
        # its first value arrives.
        self.waiting = [
            p.label for p in plan.panels if len(frame) and not has_values(columns(self.sources[p.label]))
        ]
        # A new plan object each time: param notifies the view, which rebuilds the figures.
        self.plan = replace(plan, panels=tuple(p for p in plan.panels if p.label not in self.waiting))

    def _show_provisional(self, candle: dict[str, Any] | None) -> None:
        if candle is self.provisional:
            return
        self.provisional = candle
        shown = candle_frame([] if candle is None else [candle])
        self.sources["provisional"].data = chart_columns(shown, self.timeframe, provisional=True)

    # -- live -----------------------------------------------------------------------------------
    def poll_live(self) -> None:
        """Drain this session's live queue into the sources (run by a periodic callback)."""
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
        self._check_pending()
        self._publish_state()

    def _check_pending(self) -> None:
        """A shown user indicator's first stored values (its history, from the flow) reload the series."""
        now = time.monotonic()
        if not self.pending or self._span is None or now - self._pending_at < PENDING_SECONDS:
            return
        self._pending_at = now
        try:
            stored = self.data.db.indicator_history(self.symbol, self.timeframe, self.pending, *self._span)
        except DataUnavailable as error:
            self.db_error = str(error)
            return
        if len(stored):
            self.reload()

    def apply(self, messages: Iterable[LiveMessage]) -> None:
        """Live messages of the series: new candles, the provisional candle, indicator values, signals."""
        messages = list(messages)
        minute_kind = {channel: kind for kind, channel in self.minute_channels.items()}
        batch = sort_live(
            [m for m in messages if m.channel not in minute_kind],
            self.channels,
            self.last_time,
            None if minute_kind else self.provisional,
        )
        if len(batch.candles):
            self.sources["candles"].stream(
                chart_columns(batch.candles, self.timeframe), rollover=self.max_rows
            )
            self.last_time = batch.candles["time"].iloc[-1].to_pydatetime()
        if minute_kind:
            for message in messages:
                if message.channel in minute_kind:
                    self.parts.add(minute_kind[message.channel], message.payload)
            self._show_provisional(self.parts.candle(self.last_time))
        else:
            self._show_provisional(batch.provisional)
        self._stream_indicators(batch.indicators)
        self._stream_signals(batch)

    def _stream_indicators(self, payloads: Iterable[Mapping[str, Any]]) -> None:
        """Values newer than their label's last; a waiting sub-panel's first value redraws the chart. A
        pending user indicator's (its history, published at once) are read from the database instead."""
        for payload in payloads:
            label = payload["indicator"]
            source = self.sources.get(label) if label in self.indicators else None
            if source is None or label in self.pending:
                continue
            times = columns(source)["time"]
            if not times or to_ms([payload["time"]])[0] > times[-1]:
                row = indicator_row(payload, [k for k in columns(source) if k != "time"])
                source.stream(row, rollover=self.max_rows)
                if label in self.waiting and has_values(row):
                    self.redraw = True

    def _stream_signals(self, batch: LiveBatch) -> None:
        """Signals not yet shown (by candle close and strategy), marked at their candle's close."""
        marks, candles = columns(self.sources["signals"]), columns(self.sources["candles"])
        known = set(zip(marks["time"][-100:], marks["strategy"][-100:], strict=True))
        fresh = [s for s in batch.signals if (to_ms([s["time"]])[0], s["strategy"]) not in known]
        if fresh:
            self.sources["signals"].stream(
                signal_columns(signal_frame(fresh), candles["time"], candles["close"]), rollover=self.max_rows
            )

    def _publish_state(self) -> None:
        # A new state object each time: param notifies the view, which renders the summary.
        self.state = ChartState(
            self.symbol,
            self.timeframe,
            columns(self.sources["candles"]),
            len(columns(self.sources["signals"])["time"]),
            self.provisional,
            self.live_error,
            self.waiting,
            self.states,
            self.db_error is None,
        )

    def close(self) -> None:
        """Stop following the series (the session ended)."""
        if self.queue is not None:
            self.data.live.unregister(self.queue)
            self.queue = None
