"""The strategy registry: name -> template and parameter specification, and ``build_strategy``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from market.indicators.registry import ParamSpec
from market.strategies.base import Strategy
from market.strategies.templates import (
    BollingerBreakout,
    DonchianBreakout,
    EmaCrossover,
    MacdCross,
    RsiReversion,
)


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A registered strategy template: its class, parameters and a one-line description."""

    name: str
    cls: type[Strategy]
    params: tuple[ParamSpec, ...]
    description: str

    @property
    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}


def _period(name: str, default: int) -> ParamSpec:
    return ParamSpec(name, int, default, 2, 100_000)


def _level(name: str, default: float) -> ParamSpec:
    return ParamSpec(name, float, default, 0.0, 100.0)


STRATEGIES: Mapping[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "ema_crossover",
            EmaCrossover,
            (_period("fast", 9), _period("slow", 21)),
            "buy/sell when EMA(fast) crosses above/below EMA(slow)",
        ),
        StrategySpec(
            "rsi_reversion",
            RsiReversion,
            (
                _period("timeperiod", 14),
                _level("oversold", 30.0),
                _level("overbought", 70.0),
                _level("exit_level", 50.0),
            ),
            "buy below oversold, sell above overbought, flat back at exit_level",
        ),
        StrategySpec(
            "macd_cross",
            MacdCross,
            (
                _period("fastperiod", 12),
                _period("slowperiod", 26),
                ParamSpec("signalperiod", int, 9, 1, 100_000),
            ),
            "buy/sell when MACD crosses above/below its signal line",
        ),
        StrategySpec(
            "bollinger_breakout",
            BollingerBreakout,
            (_period("timeperiod", 20), ParamSpec("nbdev", float, 2.0, 0.0)),
            "buy/sell on a close outside the bands, flat back at the middle band",
        ),
        StrategySpec(
            "donchian_breakout",
            DonchianBreakout,
            (ParamSpec("timeperiod", int, 20, 1, 100_000),),
            "buy/sell on a close beyond the previous timeperiod candles' high/low",
        ),
    )
}


def strategy_spec(name: str) -> StrategySpec:
    """Look a strategy template up by name, with a clear error for unknown names."""
    try:
        return STRATEGIES[name.lower()]
    except (KeyError, AttributeError):
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; known strategies: {known}") from None


def validate_strategy_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the template's spec; return the full parameter set."""
    spec = strategy_spec(name)
    by_name = {p.name: p for p in spec.params}
    unknown = sorted(set(params) - set(by_name))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for {spec.name}; expected: {', '.join(by_name)}")
    return {
        p.name: p.check(spec.name, params[p.name]) if p.name in params else p.kind(p.default)
        for p in spec.params
    }


def build_strategy(name: str, label: str | None = None, **params: Any) -> Strategy:
    """A fresh strategy state object; raises ValueError for unknown names, parameters or bad values.

    ``label`` names the strategy in its signals (default: the template name).
    """
    spec = strategy_spec(name)
    return spec.cls(label=label, **validate_strategy_params(spec.name, params))
