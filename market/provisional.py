"""The provisional candle: the in-progress candle shown live, and the throttle that paces its updates.

A ``ProvisionalCandle`` is never fed to indicators, signals, storage or backtests (TIME.md rule 7).
Pure: no I/O and no clock reads (time comes in as the items' ``as_of`` or a ``now`` argument).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from market.types import CandleBody

SeriesKey = tuple[str, str, str]
"""(exchange, symbol, timeframe)."""


@dataclass(frozen=True, slots=True)
class ProvisionalCandle(CandleBody):
    """The in-progress candle over ``[open_time, close_time)`` as of ``as_of``: it may still change.

    Labelled like a final candle, by ``time`` = ``close_time`` (TIME.md rule 2), and marked
    ``"provisional": true`` on every public surface.
    """

    as_of: datetime

    @classmethod
    def of(cls, candle: CandleBody, as_of: datetime) -> ProvisionalCandle:
        """``candle``'s state so far, shown as of ``as_of``."""
        body = {name: getattr(candle, name) for name in CandleBody.__dataclass_fields__}
        return cls(**body, as_of=as_of)

    @property
    def series(self) -> SeriesKey:
        return (self.exchange, self.symbol, self.timeframe)


@dataclass
class ProvisionalThrottle:
    """At most ``max_per_second`` provisional updates per series, never losing a candle's last state.

    Time is the items' own ``as_of`` (or the ``now`` passed in), so the throttle is deterministic.
    An update arriving too soon is held (replacing any held one of the same series); it is released
    by ``due(now)`` once its slot comes, at once when the series moves on to the next candle, or by
    ``drain()`` (the candle step drains before it emits final candles), so the last state offered
    of every in-progress candle is always passed.
    """

    max_per_second: float = 2.0
    _last_sent: dict[SeriesKey, datetime] = field(default_factory=dict, init=False, repr=False)
    _held: dict[SeriesKey, ProvisionalCandle] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def every(cls, interval: timedelta) -> ProvisionalThrottle:
        """At most one update per ``interval`` per series."""
        return cls(max_per_second=1 / interval.total_seconds())

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=1 / self.max_per_second)

    def offer(self, item: ProvisionalCandle) -> list[ProvisionalCandle]:
        """The updates to publish now given this new one (zero, one or two items, oldest first)."""
        key = item.series
        out: list[ProvisionalCandle] = []
        held = self._held.get(key)
        if held is not None and held.open_time != item.open_time:
            out.append(self._held.pop(key))  # the previous candle's final state
            self._last_sent[key] = held.as_of
        last = self._last_sent.get(key)
        if out or last is None or item.as_of - last >= self.interval:
            self._held.pop(key, None)
            self._last_sent[key] = item.as_of
            out.append(item)
        else:
            self._held[key] = item
        return out

    def due(self, now: datetime) -> list[ProvisionalCandle]:
        """Held updates whose slot has come by ``now``."""
        out = []
        for key in list(self._held):
            if now - self._last_sent[key] >= self.interval:
                out.append(self._held.pop(key))
                self._last_sent[key] = now
        return out

    def drain(self) -> list[ProvisionalCandle]:
        """Every held update (e.g. before the final candles, or at shutdown)."""
        out = list(self._held.values())
        self._held.clear()
        return out
