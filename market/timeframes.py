"""Timeframes aligned to the UTC epoch (TIME.md): 1m, 5m, 15m, 1h, 4h, 1d.

A timeframe maps any instant to the half-open interval ``[open, close)`` that contains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from market.types import EPOCH


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A candle length; boundaries are multiples of ``length`` since the UTC epoch."""

    name: str
    length: timedelta

    @property
    def seconds(self) -> int:
        return int(self.length.total_seconds())

    def open_of(self, ts: datetime) -> datetime:
        """Open of the interval containing ``ts`` (a trade at exactly a boundary opens the next one)."""
        return EPOCH + ((ts - EPOCH) // self.length) * self.length

    def close_of(self, ts: datetime) -> datetime:
        """Close (= public timestamp) of the interval containing ``ts``."""
        return self.open_of(ts) + self.length

    def is_boundary(self, ts: datetime) -> bool:
        return (ts - EPOCH) % self.length == timedelta(0)

    def __str__(self) -> str:
        return self.name


TF_1M = Timeframe("1m", timedelta(minutes=1))
TF_5M = Timeframe("5m", timedelta(minutes=5))
TF_15M = Timeframe("15m", timedelta(minutes=15))
TF_1H = Timeframe("1h", timedelta(hours=1))
TF_4H = Timeframe("4h", timedelta(hours=4))
TF_1D = Timeframe("1d", timedelta(days=1))

TIMEFRAMES: dict[str, Timeframe] = {tf.name: tf for tf in (TF_1M, TF_5M, TF_15M, TF_1H, TF_4H, TF_1D)}
HIGHER_TIMEFRAMES: tuple[Timeframe, ...] = (TF_5M, TF_15M, TF_1H, TF_4H, TF_1D)


def timeframe(name: str) -> Timeframe:
    """Look a timeframe up by name, with a clear error for unknown names."""
    try:
        return TIMEFRAMES[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r}; expected one of {', '.join(TIMEFRAMES)}") from None
