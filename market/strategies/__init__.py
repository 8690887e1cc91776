"""Strategy templates: closed candles in, ``Signal`` (buy / sell / flat) out on stance changes.

>>> strategy = build_strategy("ema_crossover", fast=9, slow=21)
>>> for candle in candles:                    # doctest: +SKIP
...     signal = strategy.update(candle)      # a Signal stamped candle.close_time, or None
"""

from market.strategies.base import Strategy
from market.strategies.registry import (
    STRATEGIES,
    StrategySpec,
    build_strategy,
    strategy_spec,
    validate_strategy_params,
)
from market.strategies.templates import (
    BollingerBreakout,
    DonchianBreakout,
    EmaCrossover,
    MacdCross,
    RsiReversion,
)

__all__ = [
    "STRATEGIES",
    "BollingerBreakout",
    "DonchianBreakout",
    "EmaCrossover",
    "MacdCross",
    "RsiReversion",
    "Strategy",
    "StrategySpec",
    "build_strategy",
    "strategy_spec",
    "validate_strategy_params",
]
