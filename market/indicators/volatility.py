"""Volatility: TRANGE, ATR, NATR, STDDEV, BBANDS.

TA-Lib conventions reproduced here:

- TRANGE starts at the second bar (it needs the previous close): max(high-low, |high-prev close|,
  |low-prev close|).
- ATR is seeded with the plain average of the first ``timeperiod`` true ranges (bars 1..p), then
  Wilder-smoothed ``atr = (atr*(p-1) + tr)/p``; first value at index ``timeperiod``. NATR = 100*ATR/close
  (0 when the close is zero). With ``timeperiod=1`` TA-Lib's NATR returns the plain, unnormalised true
  range; this is reproduced.
- STDDEV is the population standard deviation (divisor ``timeperiod``) times ``nbdev``. TA-Lib keeps
  re-anchored running sums so that an exactly flat window gives exactly 0 (not rounding residue); this
  module recomputes the window's variance around its newest value each bar, which gives the same.
- BBANDS (``matype`` 0, SMA, TA-Lib's default and the only type supported) uses that same population
  standard deviation around the SMA: middle = SMA, upper/lower = middle +/- nbdevup/nbdevdn * stddev.
"""

from __future__ import annotations

import math
from collections import deque

from market.indicators.base import Bar, CloseIndicator, Indicator, Output, SmaCore, is_zero, true_range


class TrueRangeCore:
    """True range from the second bar on."""

    def __init__(self) -> None:
        self.prev_close: float | None = None

    def push(self, high: float, low: float, close: float) -> float | None:
        prev_close, self.prev_close = self.prev_close, close
        if prev_close is None:
            return None
        return true_range(high, low, prev_close)


class AtrCore:
    """Average true range with TA-Lib's seed (SMA of the first ``period`` true ranges)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.tr = TrueRangeCore()
        self.n = 0
        self.acc = 0.0
        self.value: float | None = None

    def push(self, high: float, low: float, close: float) -> float | None:
        tr = self.tr.push(high, low, close)
        if tr is None:
            return None
        p = self.period
        if self.value is not None:
            if p == 1:
                self.value = tr
            else:
                self.value = (self.value * (p - 1) + tr) / p
            return self.value
        self.acc += tr
        self.n += 1
        if self.n == p:
            self.value = self.acc / p
        return self.value


class TRANGE(Indicator):
    """True range."""

    name = "TRANGE"

    def __init__(self) -> None:
        super().__init__()
        self.warmup = 1
        self.core = TrueRangeCore()

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        v = self.core.push(bar.high, bar.low, bar.close)
        return None if v is None else {"value": v}


class ATR(Indicator):
    """Average true range (Wilder)."""

    name = "ATR"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.core = AtrCore(timeperiod)

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        v = self.core.push(bar.high, bar.low, bar.close)
        return None if v is None else {"value": v}


class NATR(ATR):
    """Normalised average true range: 100 * ATR / close."""

    name = "NATR"

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        v = self.core.push(bar.high, bar.low, bar.close)
        if v is None:
            return None
        if self.params["timeperiod"] == 1:  # TA-Lib returns the plain true range for timeperiod=1
            return {"value": v}
        return {"value": (v / bar.close) * 100.0 if not is_zero(bar.close) else 0.0}


class VarianceCore:
    """Population variance over ``period`` inputs, recomputed over the window (O(period)) each time.

    Deviations are taken from the newest value before averaging, so a flat window gives exactly 0 and a
    window with any spread keeps full precision (no subtraction of two ~mean^2 quantities). TA-Lib's
    running, re-anchored sums reach the same values: exactly 0 for a flat window, accurate otherwise.
    """

    def __init__(self, period: int) -> None:
        self.period = period
        self.window: deque[float] = deque(maxlen=period)

    def push(self, x: float) -> float | None:
        window = self.window
        window.append(x)
        if len(window) < self.period:
            return None
        total1 = 0.0
        total2 = 0.0
        for v in window:
            d = v - x
            total1 += d
            total2 += d * d
        mean1 = total1 / self.period
        variance = total2 / self.period - mean1 * mean1
        return variance if variance > 0.0 else 0.0


class STDDEV(CloseIndicator):
    """Population standard deviation of the close, times ``nbdev``."""

    name = "STDDEV"

    def __init__(self, timeperiod: int = 5, nbdev: float = 1.0) -> None:
        super().__init__(timeperiod=timeperiod, nbdev=nbdev)
        self.warmup = timeperiod - 1
        self.core = VarianceCore(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        var = self.core.push(x)
        if var is None:
            return None
        return {"value": math.sqrt(var) * self.params["nbdev"]}


class BBANDS(CloseIndicator):
    """Bollinger bands around the SMA: upperband, middleband, lowerband."""

    name = "BBANDS"
    outputs = ("upperband", "middleband", "lowerband")

    def __init__(
        self, timeperiod: int = 20, nbdevup: float = 2.0, nbdevdn: float = 2.0, matype: int = 0
    ) -> None:
        super().__init__(timeperiod=timeperiod, nbdevup=nbdevup, nbdevdn=nbdevdn, matype=matype)
        self.warmup = timeperiod - 1
        self.sma = SmaCore(timeperiod)
        self.var = VarianceCore(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        mean = self.sma.push(x)
        var = self.var.push(x)
        if mean is None or var is None:
            return None
        std = math.sqrt(var)
        return {
            "upperband": mean + self.params["nbdevup"] * std,
            "middleband": mean,
            "lowerband": mean - self.params["nbdevdn"] * std,
        }
