"""The per-series indicator step: closed candles of one (instrument, timeframe) in, indicator values
and strategy signals out. A thin adapter around ``configs.indicators.RunPlan``'s state objects.

Only final candles reach this step (TIME.md rule 7): an indicator value or signal stamped T is computed
from candles closing at or before T. A series that continues stored data (the live flow after a
restart) first replays the stored candles before its first one through fresh state, outputs discarded,
so its values are those of an uninterrupted run (docs/reliability.md, "Resume").

The live flow also gives the step the user indicators of its series (``market.control.IndicatorChange``,
keyed like the candles by ``series_key``): an added (or, at start, loaded) one is validated like a
configured entry, computed over the series' stored candles up to the last candle the step processed
(those values are output: the chart shows its history at once), then on every next candle; a removed
one stops. See docs/indicators.md ("User indicators").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import ValidationError

from configs.indicators import IndicatorEntry, IndicatorsConfig, RunPlan
from market.control import IndicatorChange
from market.indicators import Indicator
from market.indicators.base import Bar
from market.types import Candle, IndicatorValue, Signal

log = logging.getLogger(__name__)

IndicatorOut = IndicatorValue | Signal
ALL_STORED = datetime.max.replace(tzinfo=UTC)
"""The end of a read of every stored candle of a series (a user indicator loaded before any candle)."""


class History(Protocol):
    """A series' stored final candles, oldest first (``connectors.resume.StoredHistory``)."""

    def __call__(self, first: Candle) -> Iterable[Candle]:
        """Those closing before ``first``."""
        ...

    def range(
        self, exchange: str, symbol: str, timeframe: str, after: datetime | None, until: datetime
    ) -> Iterable[Candle]:
        """Those with close in ``(after, until]`` (every one up to ``until`` when ``after`` is None)."""
        ...


def series_key(item: Candle | IndicatorChange) -> str:
    return f"{item.exchange}|{item.symbol}|{item.timeframe}"


@dataclass
class UserIndicator:
    """A user indicator's state: the indicator and the close of the last candle it was fed."""

    indicator: Indicator
    last: datetime | None = None


@dataclass
class SeriesPlan(RunPlan):
    """A series' configured plan, its user indicators by label and the close of the last candle the step
    processed (None before the first: the configured indicators have not replayed the history yet)."""

    last: datetime | None = None
    user: dict[str, UserIndicator] = field(default_factory=dict)


class IndicatorStep:
    """``(state, candle | change) -> (state, outputs)`` for ``op.stateful_flat_map``."""

    def __init__(self, config: IndicatorsConfig, history: History | None = None) -> None:
        self.config = config
        self.history = history

    def __call__(
        self, plan: RunPlan | None, item: Candle | IndicatorChange
    ) -> tuple[RunPlan | None, Iterable[IndicatorOut]]:
        series = plan if type(plan) is SeriesPlan else self._plan(plan, item)
        if type(item) is IndicatorChange:
            return series, self._change(series, item)
        candle: Candle = item  # type: ignore[assignment]
        if series.last is None and self.history is not None and (series.indicators or series.strategies):
            for stored in self.history(candle):
                _update(series, stored)
        out = _update(series, candle)
        if series.user:
            for label, user in series.user.items():
                out.extend(self._user_update(label, user, candle))
        series.last = candle.close_time
        return series, out

    def _plan(self, plan: RunPlan | None, item: Candle | IndicatorChange) -> SeriesPlan:
        """A series' first item: its configured plan."""
        configured = plan or self.config.plan(item.symbol, item.timeframe)
        return SeriesPlan(
            configured.symbol, configured.timeframe, configured.indicators, configured.strategies
        )

    def _change(self, series: SeriesPlan, change: IndicatorChange) -> list[IndicatorOut]:
        """Apply a user indicator change; an added one's values over the stored candles."""
        where = f"{change.label!r} on {series_key(change)}"
        if change.action == "remove":
            if series.user.pop(change.label, None) is not None:
                log.info("user indicator %s removed", where)
            return []
        if change.label in series.user:  # loaded again (a replayed change): already running
            return []
        entry = _valid_entry(change, where)
        if entry is None:
            return []
        if entry.key in series.indicators:
            log.warning("user indicator %s ignored: the label is a configured indicator's", where)
            return []
        user = series.user[entry.key] = UserIndicator(entry.build())
        if self.history is None:
            return []
        stored = self.history.range(
            change.exchange, change.symbol, change.timeframe, None, series.last or ALL_STORED
        )
        values: list[IndicatorOut] = list(_fill(entry.key, user, stored))
        log.info("user indicator %s added: %d values over the stored candles", where, len(values))
        return values

    def _user_update(self, label: str, user: UserIndicator, candle: Candle) -> list[IndicatorValue]:
        """A user indicator on a live candle: skipped if its history already held it; the stored candles
        before it first if its history ended earlier (the database had not stored them yet when it was
        added)."""
        if user.last is not None and candle.close_time <= user.last:
            return []
        out: list[IndicatorValue] = []
        if self.history is not None and (user.last is None or candle.open_time > user.last):
            stored = self.history.range(
                candle.exchange, candle.symbol, candle.timeframe, user.last, candle.open_time
            )
            out.extend(_fill(label, user, stored))
            if user.last is not None and user.last < candle.open_time:
                log.warning(
                    "user indicator %r on %s: the stored candles end at %s, before this candle's open %s;"
                    " its values skip the candles between",
                    label,
                    series_key(candle),
                    user.last.isoformat(),
                    candle.open_time.isoformat(),
                )
        out.extend(_fill(label, user, (candle,)))
        return out


def _valid_entry(change: IndicatorChange, where: str) -> IndicatorEntry | None:
    """The change's entry validated as a configured one would be; None (logged) if it is not valid."""
    try:
        entry = IndicatorEntry.model_validate(change.entry)
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(p) for p in first["loc"]) or "entry"
        log.warning("user indicator %s ignored: %s: %s", where, place, first["msg"])
        return None
    if entry.key != change.label:
        log.warning("user indicator %s ignored: its entry is labelled %r", where, entry.key)
        return None
    return entry


def _fill(label: str, user: UserIndicator, candles: Iterable[Candle]) -> Iterator[IndicatorValue]:
    """Feed ``candles`` to one user indicator; its values."""
    for candle in candles:
        value = _value(label, user.indicator, candle, Bar.from_candle(candle))
        user.last = candle.close_time
        if value is not None:
            yield value


def _value(label: str, indicator: Indicator, candle: Candle, bar: Bar) -> IndicatorValue | None:
    values = indicator.update_bar(bar)
    if values and all(math.isfinite(v) for v in values.values()):
        return IndicatorValue(
            candle.exchange, candle.symbol, candle.timeframe, candle.close_time, label, values
        )
    return None


def _update(plan: RunPlan, candle: Candle) -> list[IndicatorOut]:
    """Feed one final candle to every configured indicator and strategy of the series; their outputs."""
    out: list[IndicatorOut] = []
    bar = Bar.from_candle(candle)
    for label, indicator in plan.indicators.items():
        value = _value(label, indicator, candle, bar)
        if value is not None:
            out.append(value)
    for strategy in plan.strategies.values():
        signal = strategy.update(candle)
        if signal is not None:
            out.append(signal)
    return out
