"""The per-series indicator step: closed candles of one (instrument, timeframe) in, indicator values
and strategy signals out. A thin adapter around ``configs.indicators.RunPlan``'s state objects.

Only final candles reach this step (TIME.md rule 7): an indicator value or signal stamped T is computed
from candles closing at or before T.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from configs.indicators import IndicatorsConfig, RunPlan
from market.indicators.base import Bar
from market.types import Candle, IndicatorValue, Signal

IndicatorOut = IndicatorValue | Signal


def series_key(candle: Candle) -> str:
    return f"{candle.exchange}|{candle.symbol}|{candle.timeframe}"


class IndicatorStep:
    """``(state, candle) -> (state, outputs)`` for ``op.stateful_flat_map``."""

    def __init__(self, config: IndicatorsConfig) -> None:
        self.config = config

    def __call__(self, plan: RunPlan | None, candle: Candle) -> tuple[RunPlan | None, Iterable[IndicatorOut]]:
        if plan is None:
            plan = self.config.plan(candle.symbol, candle.timeframe)
        out: list[IndicatorOut] = []
        bar = Bar.from_candle(candle)
        for label, indicator in plan.indicators.items():
            values = indicator.update_bar(bar)
            if values and all(math.isfinite(v) for v in values.values()):
                out.append(IndicatorValue(candle.exchange, candle.symbol, candle.timeframe,
                                          candle.close_time, label, values))
        for strategy in plan.strategies.values():
            signal = strategy.update(candle)
            if signal is not None:
                out.append(signal)
        return plan, out
