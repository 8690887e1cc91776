"""The per-series indicator step: closed candles of one (instrument, timeframe) in, indicator values
and strategy signals out. A thin adapter around ``configs.indicators.RunPlan``'s state objects.

Only final candles reach this step (TIME.md rule 7): an indicator value or signal stamped T is computed
from candles closing at or before T. A series that continues stored data (the live flow after a
restart) first replays the stored candles before its first one through fresh state, outputs discarded,
so its values are those of an uninterrupted run (docs/reliability.md, "Resume").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from configs.indicators import IndicatorsConfig, RunPlan
from market.indicators.base import Bar
from market.types import Candle, IndicatorValue, Signal

IndicatorOut = IndicatorValue | Signal
History = Callable[[Candle], Iterable[Candle]]
"""The stored candles of a series before the given one, oldest first."""


def series_key(candle: Candle) -> str:
    return f"{candle.exchange}|{candle.symbol}|{candle.timeframe}"


class IndicatorStep:
    """``(state, candle) -> (state, outputs)`` for ``op.stateful_flat_map``."""

    def __init__(self, config: IndicatorsConfig, history: History | None = None) -> None:
        self.config = config
        self.history = history

    def __call__(self, plan: RunPlan | None, candle: Candle) -> tuple[RunPlan | None, Iterable[IndicatorOut]]:
        if plan is None:
            plan = self.config.plan(candle.symbol, candle.timeframe)
            if self.history is not None and (plan.indicators or plan.strategies):
                for stored in self.history(candle):
                    _update(plan, stored)
        return plan, _update(plan, candle)


def _update(plan: RunPlan, candle: Candle) -> list[IndicatorOut]:
    """Feed one final candle to every indicator and strategy of the series; their outputs."""
    out: list[IndicatorOut] = []
    bar = Bar.from_candle(candle)
    for label, indicator in plan.indicators.items():
        values = indicator.update_bar(bar)
        if values and all(math.isfinite(v) for v in values.values()):
            out.append(
                IndicatorValue(
                    candle.exchange, candle.symbol, candle.timeframe, candle.close_time, label, values
                )
            )
    for strategy in plan.strategies.values():
        signal = strategy.update(candle)
        if signal is not None:
            out.append(signal)
    return out
