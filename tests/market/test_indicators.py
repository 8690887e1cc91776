"""Incremental indicators against independent oracles on real candles.

TA-Lib indicators are compared with TA-Lib's own batch functions over the whole series; the indicators
TA-Lib does not have (VWAP, KELTNER, DONCHIAN, SUPERTREND, ICHIMOKU) with pandas formulations written
here. Inputs are the exchange's own XRP-ETH 1m and 5m candles (flat bars included), plus the 1m series
scaled by 1e7 so that prices look like BTC's (catches absolute epsilons that only fit one price level).
"""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from talib import abstract

from market.indicators import INDICATORS, build_indicator
from market.types import Candle
from tests.support.tapes import kline_candles

TAPES = Path(__file__).resolve().parents[1] / "data" / "tapes"


def load_candles(name: str, timeframe: str, scale: int = 0) -> tuple[Candle, ...]:
    return kline_candles(TAPES / name, "XRP-ETH", timeframe, scale)


@cache
def dataset(key: str) -> tuple[Candle, ...]:
    if key == "1m":
        return load_candles("XRP-ETH-exchange-candles-1m.csv", "1m")
    if key == "5m":
        return load_candles("XRP-ETH-exchange-candles-5m.csv", "5m")
    if key == "1m-scaled":
        return load_candles("XRP-ETH-exchange-candles-1m.csv", "1m", scale=7)
    raise KeyError(key)


def arrays(candles: tuple[Candle, ...]) -> dict[str, np.ndarray]:
    return {
        k: np.array([float(getattr(c, k)) for c in candles], dtype=float)
        for k in ("open", "high", "low", "close", "volume")
    }


DATASETS = ("1m", "5m", "1m-scaled")

TALIB_CASES: list[tuple[str, dict[str, Any]]] = [
    ("SMA", {}), ("SMA", {"timeperiod": 1}), ("SMA", {"timeperiod": 2}), ("SMA", {"timeperiod": 50}),
    ("EMA", {}), ("EMA", {"timeperiod": 1}), ("EMA", {"timeperiod": 2}), ("EMA", {"timeperiod": 9}),
    ("WMA", {}), ("WMA", {"timeperiod": 1}), ("WMA", {"timeperiod": 2}), ("WMA", {"timeperiod": 10}),
    ("DEMA", {}), ("DEMA", {"timeperiod": 2}), ("DEMA", {"timeperiod": 9}),
    ("TEMA", {}), ("TEMA", {"timeperiod": 2}), ("TEMA", {"timeperiod": 9}),
    ("TRIMA", {}), ("TRIMA", {"timeperiod": 1}), ("TRIMA", {"timeperiod": 2}), ("TRIMA", {"timeperiod": 3}),
    ("TRIMA", {"timeperiod": 4}), ("TRIMA", {"timeperiod": 11}),
    ("KAMA", {}), ("KAMA", {"timeperiod": 2}), ("KAMA", {"timeperiod": 10}),
    ("T3", {}), ("T3", {"timeperiod": 1}), ("T3", {"timeperiod": 2, "vfactor": 0.5}),
    ("T3", {"timeperiod": 7, "vfactor": 0.0}), ("T3", {"timeperiod": 3, "vfactor": 1.0}),
    ("MACD", {}), ("MACD", {"fastperiod": 5, "slowperiod": 35, "signalperiod": 5}),
    ("MACD", {"fastperiod": 26, "slowperiod": 12, "signalperiod": 9}),
    ("MACD", {"fastperiod": 2, "slowperiod": 3, "signalperiod": 1}),
    ("PPO", {}), ("PPO", {"matype": 0}), ("PPO", {"fastperiod": 5, "slowperiod": 10}),
    ("PPO", {"fastperiod": 10, "slowperiod": 5, "matype": 0}),
    ("APO", {}), ("APO", {"matype": 0}), ("APO", {"fastperiod": 3, "slowperiod": 20}),
    ("RSI", {}), ("RSI", {"timeperiod": 2}), ("RSI", {"timeperiod": 7}), ("RSI", {"timeperiod": 30}),
    ("CMO", {}), ("CMO", {"timeperiod": 2}), ("CMO", {"timeperiod": 9}),
    ("MOM", {}), ("MOM", {"timeperiod": 1}), ("MOM", {"timeperiod": 3}),
    ("ROC", {}), ("ROC", {"timeperiod": 1}), ("ROC", {"timeperiod": 3}),
    ("TRIX", {}), ("TRIX", {"timeperiod": 1}), ("TRIX", {"timeperiod": 5}),
    ("STOCH", {}), ("STOCH", {"fastk_period": 14, "slowk_period": 3, "slowd_period": 3}),
    ("STOCH", {"fastk_period": 1, "slowk_period": 1, "slowd_period": 1}),
    ("STOCH", {"fastk_period": 9, "slowk_period": 5, "slowd_period": 4}),
    ("STOCHF", {}), ("STOCHF", {"fastk_period": 14, "fastd_period": 3}),
    ("STOCHF", {"fastk_period": 1, "fastd_period": 1}),
    ("STOCHRSI", {}), ("STOCHRSI", {"timeperiod": 14, "fastk_period": 14, "fastd_period": 3}),
    ("STOCHRSI", {"timeperiod": 2, "fastk_period": 1, "fastd_period": 1}),
    ("STOCHRSI", {"timeperiod": 9, "fastk_period": 5, "fastd_period": 5}),
    ("WILLR", {}), ("WILLR", {"timeperiod": 2}), ("WILLR", {"timeperiod": 30}),
    ("CCI", {}), ("CCI", {"timeperiod": 2}), ("CCI", {"timeperiod": 20}),
    ("ULTOSC", {}), ("ULTOSC", {"timeperiod1": 1, "timeperiod2": 2, "timeperiod3": 3}),
    ("ULTOSC", {"timeperiod1": 28, "timeperiod2": 7, "timeperiod3": 14}),
    ("ADX", {}), ("ADX", {"timeperiod": 2}), ("ADX", {"timeperiod": 7}), ("ADX", {"timeperiod": 30}),
    ("PLUS_DI", {}), ("PLUS_DI", {"timeperiod": 1}), ("PLUS_DI", {"timeperiod": 5}),
    ("MINUS_DI", {}), ("MINUS_DI", {"timeperiod": 1}), ("MINUS_DI", {"timeperiod": 5}),
    ("AROON", {}), ("AROON", {"timeperiod": 2}), ("AROON", {"timeperiod": 25}),
    ("AROONOSC", {}), ("AROONOSC", {"timeperiod": 2}), ("AROONOSC", {"timeperiod": 25}),
    ("SAR", {}), ("SAR", {"acceleration": 0.01, "maximum": 0.1}),
    ("SAR", {"acceleration": 0.05, "maximum": 0.5}), ("SAR", {"acceleration": 0.3, "maximum": 0.2}),
    ("LINEARREG", {}), ("LINEARREG", {"timeperiod": 2}), ("LINEARREG", {"timeperiod": 30}),
    ("TRANGE", {}),
    ("ATR", {}), ("ATR", {"timeperiod": 1}), ("ATR", {"timeperiod": 5}),
    ("NATR", {}), ("NATR", {"timeperiod": 1}), ("NATR", {"timeperiod": 5}),
    ("STDDEV", {}), ("STDDEV", {"timeperiod": 2}), ("STDDEV", {"timeperiod": 20, "nbdev": 2.0}),
    ("BBANDS", {}), ("BBANDS", {"timeperiod": 5}),
    ("BBANDS", {"timeperiod": 10, "nbdevup": 1.5, "nbdevdn": 2.5}),
    ("BBANDS", {"timeperiod": 2, "nbdevup": 1.0, "nbdevdn": 1.0}),
    ("OBV", {}), ("AD", {}),
    ("ADOSC", {}), ("ADOSC", {"fastperiod": 5, "slowperiod": 20}),
    ("ADOSC", {"fastperiod": 10, "slowperiod": 3}),
    ("MFI", {}), ("MFI", {"timeperiod": 2}), ("MFI", {"timeperiod": 20}),
]  # fmt: skip


def talib_outputs(
    name: str, params: dict[str, Any], data: dict[str, np.ndarray]
) -> tuple[int, list[np.ndarray]]:
    fn = abstract.Function(name)
    fn.set_parameters(**params)
    result = fn.run(data)
    return fn.lookback, list(result) if isinstance(result, list) else [result]


def assert_matches(
    got: list[Any], keys: tuple[str, ...], refs: list[np.ndarray], lookback: int, label: str
) -> None:
    """Outputs None exactly before ``lookback``; then equal to the reference to 1e-9 relative."""
    nones = [i for i, out in enumerate(got) if out is None]
    expected_nones = list(range(min(lookback, len(got))))
    assert nones == expected_nones, f"{label}: None at {nones[:5]}... (lookback {lookback})"
    assert len(keys) == len(refs)
    for key, ref in zip(keys, refs, strict=True):
        mine = np.array([out[key] for out in got[lookback:]], dtype=float)
        expected = ref[lookback:]
        assert not np.isnan(expected).any(), f"{label}.{key}: oracle has NaN after its lookback"
        atol = 1e-12 * max(1.0, float(np.max(np.abs(expected)))) if len(expected) else 0.0
        close = np.isclose(mine, expected, rtol=1e-9, atol=atol)
        if not close.all():
            i = int(np.argmin(close))
            raise AssertionError(
                f"{label}.{key}: {int((~close).sum())} values differ, first at index {lookback + i}: "
                f"incremental {mine[i]!r} vs oracle {expected[i]!r}"
            )


@pytest.mark.parametrize("data_key", DATASETS)
@pytest.mark.parametrize(("name", "params"), TALIB_CASES, ids=[f"{n}-{p}" for n, p in TALIB_CASES])
def test_talib_indicator_matches_batch(name: str, params: dict[str, Any], data_key: str) -> None:
    candles = dataset(data_key)
    indicator = build_indicator(name, **params)
    lookback, refs = talib_outputs(name, params, arrays(candles))
    assert indicator.warmup == lookback
    got = [indicator.update(c) for c in candles]
    assert_matches(got, indicator.outputs, refs, lookback, f"{name}{params}@{data_key}")


def test_every_talib_indicator_is_covered() -> None:
    covered = {name for name, _ in TALIB_CASES}
    assert covered == {name for name, spec in INDICATORS.items() if spec.talib}


def test_defaults_are_talibs() -> None:
    for name, spec in INDICATORS.items():
        if spec.talib:
            assert spec.defaults == dict(abstract.Function(name).info["parameters"]), name


@settings(max_examples=40, deadline=None)
@given(
    closes=st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=120),
    period=st.integers(min_value=2, max_value=20),
)
def test_random_series_close_indicators(closes: list[float], period: int) -> None:
    """On arbitrary positive series (ties, spikes, flat runs), the close-only indicators match TA-Lib."""
    x = np.array(closes)
    for name in ("SMA", "EMA", "WMA", "KAMA", "RSI", "CMO", "STDDEV", "LINEARREG", "TRIMA"):
        indicator = build_indicator(name, timeperiod=period)
        ref = getattr(talib, name)(x, timeperiod=period)
        got = [indicator.push(float(v)) for v in closes]  # type: ignore[attr-defined]
        assert_matches(got, ("value",), [ref], min(indicator.warmup, len(x)), f"{name}({period})")


# ---------------------------------------------------------------------------------------------
# Indicators beyond TA-Lib, against pandas formulations written here.


def frame(candles: tuple[Candle, ...]) -> pd.DataFrame:
    df = pd.DataFrame(arrays(candles))
    df["open_time"] = pd.to_datetime([c.open_time for c in candles], utc=True)
    return df


def pd_ema(x: pd.Series, period: int) -> pd.Series:
    """SMA-seeded EMA: the seed replaces the first ``period`` values, then pandas' recursive ewm."""
    seeded = x.iloc[period - 1 :].copy()
    seeded.iloc[0] = x.iloc[:period].mean()
    out = seeded.ewm(alpha=2.0 / (period + 1), adjust=False).mean()
    return out.reindex(x.index)


def pd_atr(df: pd.DataFrame, period: int) -> pd.Series:
    prev_close = df["close"].shift(1)
    tr = pd.concat(
        [df["high"] - df["low"], (df["high"] - prev_close).abs(), (df["low"] - prev_close).abs()], axis=1
    ).max(axis=1)
    tr.iloc[0] = np.nan
    seeded = tr.iloc[period:].copy()
    seeded.iloc[0] = tr.iloc[1 : period + 1].mean()
    return seeded.ewm(alpha=1.0 / period, adjust=False).mean().reindex(df.index)


def oracle_vwap(df: pd.DataFrame) -> list[np.ndarray]:
    session = df["open_time"].dt.floor("D")
    typical = (df["high"] + df["low"] + df["close"]) / 3
    cum_pv = (typical * df["volume"]).groupby(session).cumsum()
    cum_v = df["volume"].groupby(session).cumsum()
    return [np.where(cum_v > 0, cum_pv / cum_v.where(cum_v > 0, 1.0), typical)]


def oracle_keltner(df: pd.DataFrame, timeperiod: int, atr_period: int, multiplier: float) -> list[np.ndarray]:
    mid = pd_ema(df["close"], timeperiod)
    atr = pd_atr(df, atr_period)
    return [(mid + multiplier * atr).to_numpy(), mid.to_numpy(), (mid - multiplier * atr).to_numpy()]


def oracle_donchian(df: pd.DataFrame, timeperiod: int) -> list[np.ndarray]:
    hi = df["high"].rolling(timeperiod).max()
    lo = df["low"].rolling(timeperiod).min()
    return [hi.to_numpy(), ((hi + lo) / 2).to_numpy(), lo.to_numpy()]


def oracle_supertrend(df: pd.DataFrame, timeperiod: int, multiplier: float) -> list[np.ndarray]:
    atr = pd_atr(df, timeperiod).to_numpy()
    hl2 = ((df["high"] + df["low"]) / 2).to_numpy()
    close = df["close"].to_numpy()
    n = len(df)
    up = hl2 - multiplier * atr
    dn = hl2 + multiplier * atr
    trend = np.full(n, np.nan)
    for i in range(timeperiod, n):
        first = i == timeperiod
        up1 = up[i] if first else up[i - 1]
        dn1 = dn[i] if first else dn[i - 1]
        if close[i - 1] > up1:
            up[i] = max(up[i], up1)
        if close[i - 1] < dn1:
            dn[i] = min(dn[i], dn1)
        prev = 1.0 if first else trend[i - 1]
        if prev == -1.0 and close[i] > dn1:
            trend[i] = 1.0
        elif prev == 1.0 and close[i] < up1:
            trend[i] = -1.0
        else:
            trend[i] = prev
    st_line = np.where(trend > 0, up, dn)
    return [st_line, trend, up, dn]


def oracle_ichimoku(df: pd.DataFrame, tenkan: int, kijun: int, senkou_b: int) -> list[np.ndarray]:
    def mid(p: int) -> pd.Series:
        return (df["high"].rolling(p).max() + df["low"].rolling(p).min()) / 2

    t, k, b = mid(tenkan), mid(kijun), mid(senkou_b)
    return [t.to_numpy(), k.to_numpy(), ((t + k) / 2).to_numpy(), b.to_numpy()]


EXTRA_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("VWAP", {}, 0),
    ("KELTNER", {}, 19),
    ("KELTNER", {"timeperiod": 5, "atr_period": 20, "multiplier": 1.5}, 20),
    ("DONCHIAN", {}, 19),
    ("DONCHIAN", {"timeperiod": 1}, 0),
    ("DONCHIAN", {"timeperiod": 55}, 54),
    ("SUPERTREND", {}, 10),
    ("SUPERTREND", {"timeperiod": 7, "multiplier": 2.0}, 7),
    ("ICHIMOKU", {}, 51),
    ("ICHIMOKU", {"tenkan_period": 20, "kijun_period": 60, "senkou_b_period": 120}, 119),
]

ORACLES = {
    "VWAP": lambda df, **p: oracle_vwap(df),
    "KELTNER": lambda df, timeperiod=20, atr_period=10, multiplier=2.0: oracle_keltner(
        df, timeperiod, atr_period, multiplier
    ),
    "DONCHIAN": lambda df, timeperiod=20: oracle_donchian(df, timeperiod),
    "SUPERTREND": lambda df, timeperiod=10, multiplier=3.0: oracle_supertrend(df, timeperiod, multiplier),
    "ICHIMOKU": lambda df, tenkan_period=9, kijun_period=26, senkou_b_period=52: oracle_ichimoku(
        df, tenkan_period, kijun_period, senkou_b_period
    ),
}


@pytest.mark.parametrize("data_key", DATASETS)
@pytest.mark.parametrize(
    ("name", "params", "warmup"), EXTRA_CASES, ids=[f"{n}-{p}" for n, p, _ in EXTRA_CASES]
)
def test_extra_indicator_matches_pandas(
    name: str, params: dict[str, Any], warmup: int, data_key: str
) -> None:
    candles = dataset(data_key)
    indicator = build_indicator(name, **params)
    assert indicator.warmup == warmup
    refs = ORACLES[name](frame(candles), **params)
    got = [indicator.update(c) for c in candles]
    assert_matches(got, indicator.outputs, refs, warmup, f"{name}{params}@{data_key}")


def test_every_extra_indicator_is_covered() -> None:
    assert {n for n, _, _ in EXTRA_CASES} == {n for n, spec in INDICATORS.items() if not spec.talib}


def test_vwap_resets_at_utc_midnight_by_open_time() -> None:
    """The 23:59 candle (closing at 00:00) ends the old session; the 00:00 candle starts a new one."""
    candles = dataset("1m")
    day_start = datetime(2019, 10, 12, tzinfo=UTC)
    i = next(i for i, c in enumerate(candles) if c.open_time == day_start)
    vwap = build_indicator("VWAP")
    outs = [vwap.update(c) for c in candles[: i + 1]]
    first = candles[i]
    typical = float(first.high + first.low + first.close) / 3
    assert outs[i] is not None and outs[i - 1] is not None
    if first.volume > 0:
        assert outs[i]["value"] == pytest.approx(typical, rel=1e-12)  # only the new session's candle
    previous_day = [c for c in candles[:i] if c.open_time >= day_start - timedelta(days=1)]
    pv = sum(float(c.high + c.low + c.close) / 3 * float(c.volume) for c in previous_day)
    volume = sum(float(c.volume) for c in previous_day)
    assert outs[i - 1]["value"] == pytest.approx(pv / volume, rel=1e-9)  # the 23:59 candle closes Oct 11


# ---------------------------------------------------------------------------------------------
# State: picklable mid-series, and the registry's errors.


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_pickle_mid_series_continues_identically(name: str) -> None:
    candles = dataset("1m")[:1500]
    reference = build_indicator(name)
    expected = [reference.update(c) for c in candles]
    cut = 700
    first = build_indicator(name)
    for c in candles[:cut]:
        first.update(c)
    resumed = pickle.loads(pickle.dumps(first))
    assert [resumed.update(c) for c in candles[cut:]] == expected[cut:]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("NOPE", {}, "unknown indicator 'NOPE'"),
        ("EMA", {"period": 9}, "unknown parameter 'period' for EMA"),
        ("EMA", {"timeperiod": 0}, "EMA parameter 'timeperiod' must be >= 1, got 0"),
        ("RSI", {"timeperiod": 1}, "RSI parameter 'timeperiod' must be >= 2, got 1"),
        ("BBANDS", {"timeperiod": 1}, "must be >= 2"),
        ("MACD", {"fastperiod": 1}, "MACD parameter 'fastperiod' must be >= 2"),
        ("SMA", {"timeperiod": 2.5}, "must be an integer"),
        ("SMA", {"timeperiod": True}, "must be a number"),
        ("SMA", {"timeperiod": "9"}, "must be a number"),
        ("T3", {"vfactor": 1.5}, "T3 parameter 'vfactor' must be <= 1"),
        ("BBANDS", {"matype": 1}, "must be one of 0"),
        ("SAR", {"acceleration": -0.1}, "must be >= 0"),
        ("STDDEV", {"nbdev": math.inf}, "must be finite"),
        ("OBV", {"timeperiod": 3}, "expected: no parameters"),
    ],
)
def test_build_indicator_errors(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_indicator(name, **params)


def test_build_indicator_names_are_case_insensitive_and_fill_defaults() -> None:
    ema = build_indicator("ema", timeperiod=9.0)
    assert ema.name == "EMA" and ema.params == {"timeperiod": 9} and ema.warmup == 8
    assert build_indicator("MACD").params == {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}
