"""The indicator registry: name -> class and parameter specification, and ``build_indicator``.

Parameter names, defaults and lower bounds are TA-Lib's (as exposed by its Python wrapper), so a
configuration written for TA-Lib means the same thing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from market.indicators.averages import DEMA, EMA, KAMA, SMA, T3, TEMA, TRIMA, WMA
from market.indicators.base import Indicator
from market.indicators.extras import DONCHIAN, ICHIMOKU, KELTNER, SUPERTREND
from market.indicators.momentum import APO, CMO, MACD, MOM, PPO, ROC, RSI, TRIX
from market.indicators.oscillators import CCI, STOCH, STOCHF, STOCHRSI, ULTOSC, WILLR
from market.indicators.trend import ADX, AROON, AROONOSC, LINEARREG, MINUS_DI, PLUS_DI, SAR
from market.indicators.volatility import ATR, BBANDS, NATR, STDDEV, TRANGE
from market.indicators.volume import AD, ADOSC, MFI, OBV, VWAP


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter: its type, default and allowed range (``choices`` restricts to a set)."""

    name: str
    kind: type  # int or float
    default: float
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[int, ...] | None = None

    def check(self, indicator: str, value: Any) -> float:
        """Return the value converted to ``kind``, or raise ValueError saying what is wrong."""
        where = f"{indicator} parameter {self.name!r}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number, got {value!r}")
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{where} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{where} must be finite, got {value!r}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise ValueError(f"{where} must be one of {allowed} (the supported types), got {value}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{where} must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{where} must be <= {self.maximum:g}, got {value}")
        return value


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """A registered indicator: its class, parameters, outputs and family."""

    name: str
    cls: type[Indicator]
    params: tuple[ParamSpec, ...]
    family: str
    talib: bool = True  # whether TA-Lib has it (and is its test oracle)

    @property
    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.cls.outputs


def _period(name: str, default: int, minimum: int = 2) -> ParamSpec:
    return ParamSpec(name, int, default, minimum, 100_000)


def _factor(name: str, default: float, minimum: float = 0.0) -> ParamSpec:
    return ParamSpec(name, float, default, minimum)


_SMA_ONLY = (0,)


def _specs() -> list[IndicatorSpec]:
    p = _period
    f = _factor
    tp = "timeperiod"
    return [
        IndicatorSpec("SMA", SMA, (p(tp, 30, 1),), "averages"),
        IndicatorSpec("EMA", EMA, (p(tp, 30, 1),), "averages"),
        IndicatorSpec("WMA", WMA, (p(tp, 30, 1),), "averages"),
        IndicatorSpec("DEMA", DEMA, (p(tp, 30, 1),), "averages"),
        IndicatorSpec("TEMA", TEMA, (p(tp, 30, 1),), "averages"),
        IndicatorSpec("TRIMA", TRIMA, (p(tp, 30, 1),), "averages"),
        IndicatorSpec("KAMA", KAMA, (p(tp, 30, 1),), "averages"),
        IndicatorSpec("T3", T3, (p(tp, 5, 1), ParamSpec("vfactor", float, 0.7, 0.0, 1.0)), "averages"),
        IndicatorSpec(
            "MACD", MACD, (p("fastperiod", 12), p("slowperiod", 26), p("signalperiod", 9, 1)), "momentum"
        ),
        IndicatorSpec(
            "PPO",
            PPO,
            (p("fastperiod", 12), p("slowperiod", 26), ParamSpec("matype", int, 1, choices=(0, 1))),
            "momentum",
        ),
        IndicatorSpec(
            "APO",
            APO,
            (p("fastperiod", 12), p("slowperiod", 26), ParamSpec("matype", int, 1, choices=(0, 1))),
            "momentum",
        ),
        IndicatorSpec("RSI", RSI, (p(tp, 14),), "momentum"),
        IndicatorSpec("CMO", CMO, (p(tp, 14),), "momentum"),
        IndicatorSpec("MOM", MOM, (p(tp, 10, 1),), "momentum"),
        IndicatorSpec("ROC", ROC, (p(tp, 10, 1),), "momentum"),
        IndicatorSpec("TRIX", TRIX, (p(tp, 30, 1),), "momentum"),
        IndicatorSpec(
            "STOCH",
            STOCH,
            (
                p("fastk_period", 5, 1),
                p("slowk_period", 3, 1),
                ParamSpec("slowk_matype", int, 0, choices=_SMA_ONLY),
                p("slowd_period", 3, 1),
                ParamSpec("slowd_matype", int, 0, choices=_SMA_ONLY),
            ),
            "oscillators",
        ),
        IndicatorSpec(
            "STOCHF",
            STOCHF,
            (
                p("fastk_period", 5, 1),
                p("fastd_period", 3, 1),
                ParamSpec("fastd_matype", int, 0, choices=_SMA_ONLY),
            ),
            "oscillators",
        ),
        IndicatorSpec(
            "STOCHRSI",
            STOCHRSI,
            (
                p(tp, 14),
                p("fastk_period", 5, 1),
                p("fastd_period", 3, 1),
                ParamSpec("fastd_matype", int, 0, choices=_SMA_ONLY),
            ),
            "oscillators",
        ),
        IndicatorSpec("WILLR", WILLR, (p(tp, 14),), "oscillators"),
        IndicatorSpec("CCI", CCI, (p(tp, 14),), "oscillators"),
        IndicatorSpec(
            "ULTOSC",
            ULTOSC,
            (p("timeperiod1", 7, 1), p("timeperiod2", 14, 1), p("timeperiod3", 28, 1)),
            "oscillators",
        ),
        IndicatorSpec("ADX", ADX, (p(tp, 14),), "trend"),
        IndicatorSpec("PLUS_DI", PLUS_DI, (p(tp, 14, 1),), "trend"),
        IndicatorSpec("MINUS_DI", MINUS_DI, (p(tp, 14, 1),), "trend"),
        IndicatorSpec("AROON", AROON, (p(tp, 14),), "trend"),
        IndicatorSpec("AROONOSC", AROONOSC, (p(tp, 14),), "trend"),
        IndicatorSpec("SAR", SAR, (f("acceleration", 0.02), f("maximum", 0.2)), "trend"),
        IndicatorSpec("LINEARREG", LINEARREG, (p(tp, 14),), "trend"),
        IndicatorSpec("TRANGE", TRANGE, (), "volatility"),
        IndicatorSpec("ATR", ATR, (p(tp, 14, 1),), "volatility"),
        IndicatorSpec("NATR", NATR, (p(tp, 14, 1),), "volatility"),
        IndicatorSpec("STDDEV", STDDEV, (p(tp, 5), f("nbdev", 1.0)), "volatility"),
        IndicatorSpec(
            "BBANDS",
            BBANDS,
            (p(tp, 20), f("nbdevup", 2.0), f("nbdevdn", 2.0), ParamSpec("matype", int, 0, choices=_SMA_ONLY)),
            "volatility",
        ),
        IndicatorSpec("OBV", OBV, (), "volume"),
        IndicatorSpec("AD", AD, (), "volume"),
        IndicatorSpec("ADOSC", ADOSC, (p("fastperiod", 3), p("slowperiod", 10)), "volume"),
        IndicatorSpec("MFI", MFI, (p(tp, 14),), "volume"),
        IndicatorSpec("VWAP", VWAP, (), "volume", talib=False),
        IndicatorSpec(
            "KELTNER",
            KELTNER,
            (p(tp, 20, 1), p("atr_period", 10, 1), f("multiplier", 2.0)),
            "extras",
            talib=False,
        ),
        IndicatorSpec("DONCHIAN", DONCHIAN, (p(tp, 20, 1),), "extras", talib=False),
        IndicatorSpec("SUPERTREND", SUPERTREND, (p(tp, 10, 1), f("multiplier", 3.0)), "extras", talib=False),
        IndicatorSpec(
            "ICHIMOKU",
            ICHIMOKU,
            (p("tenkan_period", 9, 1), p("kijun_period", 26, 1), p("senkou_b_period", 52, 1)),
            "extras",
            talib=False,
        ),
    ]


INDICATORS: Mapping[str, IndicatorSpec] = {spec.name: spec for spec in _specs()}


def indicator_spec(name: str) -> IndicatorSpec:
    """Look an indicator up by name (case-insensitive), with a clear error for unknown names."""
    try:
        return INDICATORS[name.upper()]
    except (KeyError, AttributeError):
        known = ", ".join(sorted(INDICATORS))
        raise ValueError(f"unknown indicator {name!r}; known indicators: {known}") from None


def validate_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the indicator's spec; return the full parameter set (defaults filled in)."""
    spec = indicator_spec(name)
    by_name = {p.name: p for p in spec.params}
    unknown = sorted(set(params) - set(by_name))
    if unknown:
        expected = ", ".join(by_name) or "no parameters"
        raise ValueError(f"unknown parameter {unknown[0]!r} for {spec.name}; expected: {expected}")
    resolved: dict[str, Any] = {}
    for p in spec.params:
        resolved[p.name] = p.check(spec.name, params[p.name]) if p.name in params else p.kind(p.default)
    return resolved


def build_indicator(name: str, **params: Any) -> Indicator:
    """A fresh indicator state object; raises ValueError for unknown names, parameters or bad values."""
    spec = indicator_spec(name)
    return spec.cls(**validate_params(spec.name, params))
