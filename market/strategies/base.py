"""The strategy interface: closed candles in, occasional ``Signal`` out.

A strategy computes its own indicators internally with the indicator library (so it can run alone,
and its state is one picklable object), keeps a position stance (+1 long, 0 flat, -1 short), and emits
a ``Signal`` only when its stance changes. A signal is stamped with the close of the candle passed to
``update`` and is computed from that candle and earlier ones only (TIME.md rule 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from market.indicators import Bar
from market.types import Action, Candle, Signal

_STANCE = {"buy": 1, "sell": -1, "flat": 0}


class Strategy:
    """Base class of the strategy templates: ``update(candle) -> Signal | None``."""

    name: ClassVar[str] = ""

    def __init__(self, label: str | None = None, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        self.label = label or self.name
        self.position = 0  # +1 long, 0 flat, -1 short

    def update(self, candle: Candle) -> Signal | None:
        """Consume one closed candle; return a signal stamped at its close, or None."""
        decision = self.decide(Bar.from_candle(candle))
        if decision is None:
            return None
        action, reason, values = decision
        self.position = _STANCE[action]
        return Signal(
            exchange=candle.exchange,
            symbol=candle.symbol,
            timeframe=candle.timeframe,
            time=candle.close_time,
            strategy=self.label,
            action=action,
            reason=reason,
            values=values,
        )

    def decide(self, bar: Bar) -> tuple[Action, str, Mapping[str, float]] | None:
        """The template's rule: the action to take on this bar (if any), why, and the values used."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def crossed_above(prev_a: float, prev_b: float, a: float, b: float) -> bool:
    """``a`` was at or below ``b`` on the previous bar and is strictly above it now."""
    return prev_a <= prev_b and a > b


def crossed_below(prev_a: float, prev_b: float, a: float, b: float) -> bool:
    """``a`` was at or above ``b`` on the previous bar and is strictly below it now."""
    return prev_a >= prev_b and a < b
