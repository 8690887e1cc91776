"""Incremental technical indicators, fed one closed candle at a time.

Each indicator is a small picklable state object with ``update(candle) -> dict[str, float] | None``;
it returns None during its warm-up (``warmup`` candles, TA-Lib's lookback where TA-Lib has the
indicator) and a dict of named outputs afterwards. Values agree with TA-Lib's full-history batch
computation (same seeds and smoothing conventions, see the family modules and docs/indicators.md).

    >>> ema = build_indicator("EMA", timeperiod=9)
    >>> for candle in candles:                    # doctest: +SKIP
    ...     out = ema.update(candle)              # None for the first 8 candles, then {"value": ...}
"""

from market.indicators.base import Bar, CloseIndicator, Indicator, Output
from market.indicators.registry import (
    INDICATORS,
    IndicatorSpec,
    ParamSpec,
    build_indicator,
    indicator_spec,
    validate_params,
)

__all__ = [
    "INDICATORS",
    "Bar",
    "CloseIndicator",
    "Indicator",
    "IndicatorSpec",
    "Output",
    "ParamSpec",
    "build_indicator",
    "indicator_spec",
    "validate_params",
]
