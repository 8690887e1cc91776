"""Range oscillators: STOCH, STOCHF, STOCHRSI, WILLR, CCI, ULTOSC.

TA-Lib conventions reproduced here:

- Stochastics: fast %K = 100 * (close - lowest low) / (highest high - lowest low) over ``fastk_period``
  bars including the current one; a flat window (range zero within ~90 ulp of the prices, TA-Lib's
  ``TA_IS_ZERO_SCALED``) gives 0. The smoothings are SMAs (``*_matype`` 0, TA-Lib's default; the only
  type supported here). STOCH warm-up ``(fastk-1)+(slowk-1)+(slowd-1)``; STOCHF ``(fastk-1)+(fastd-1)``.
- STOCHRSI is STOCHF applied to the RSI series (high = low = close = RSI): warm-up
  ``timeperiod + (fastk-1) + (fastd-1)``.
- WILLR = -100 * (highest high - close) / (highest high - lowest low), 0 for a flat window.
- CCI uses the typical price (h+l+c)/3, its SMA and mean absolute deviation over ``timeperiod``
  (recomputed over the whole window each bar), and the 0.015 constant; it is 0 when the deviation from
  the mean or the mean deviation is zero within ~90 ulp of the mean price level.
- ULTOSC sorts its three periods (weights 4, 2, 1 go to the shortest, middle, longest); buying pressure
  is close - min(low, prev close), true range as ATR's; a ratio whose range total is zero is left out;
  warm-up = the longest period.
"""

from __future__ import annotations

from collections import deque

from market.indicators.base import (
    Bar,
    CloseIndicator,
    Indicator,
    Output,
    RollingExtreme,
    SmaCore,
    is_zero,
    is_zero_scaled,
    true_range,
)
from market.indicators.momentum import WilderGainLoss, rsi_step


class FastK:
    """Fast %K over ``period`` bars (highest high and lowest low include the current bar)."""

    def __init__(self, period: int) -> None:
        self.highest = RollingExtreme(period, largest=True)
        self.lowest = RollingExtreme(period, largest=False)

    def push(self, high: float, low: float, close: float) -> float | None:
        hi = self.highest.push(high)[1]
        lo = self.lowest.push(low)[1]
        if not self.highest.full:
            return None
        diff = hi - lo
        if is_zero_scaled(diff, abs(hi) + abs(lo)):
            return 0.0
        return (close - lo) / (diff / 100.0)


class STOCH(Indicator):
    """Slow stochastic: slowk (SMA of fast %K) and slowd (SMA of slowk)."""

    name = "STOCH"
    outputs = ("slowk", "slowd")

    def __init__(
        self,
        fastk_period: int = 5,
        slowk_period: int = 3,
        slowk_matype: int = 0,
        slowd_period: int = 3,
        slowd_matype: int = 0,
    ) -> None:
        super().__init__(
            fastk_period=fastk_period,
            slowk_period=slowk_period,
            slowk_matype=slowk_matype,
            slowd_period=slowd_period,
            slowd_matype=slowd_matype,
        )
        self.warmup = fastk_period - 1 + slowk_period - 1 + slowd_period - 1
        self.fastk = FastK(fastk_period)
        self.slowk = SmaCore(slowk_period)
        self.slowd = SmaCore(slowd_period)

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        k = self.fastk.push(bar.high, bar.low, bar.close)
        if k is None:
            return None
        sk = self.slowk.push(k)
        if sk is None:
            return None
        sd = self.slowd.push(sk)
        return None if sd is None else {"slowk": sk, "slowd": sd}


class STOCHF(Indicator):
    """Fast stochastic: fastk and fastd (SMA of fastk)."""

    name = "STOCHF"
    outputs = ("fastk", "fastd")

    def __init__(self, fastk_period: int = 5, fastd_period: int = 3, fastd_matype: int = 0) -> None:
        super().__init__(fastk_period=fastk_period, fastd_period=fastd_period, fastd_matype=fastd_matype)
        self.warmup = fastk_period - 1 + fastd_period - 1
        self.fastk = FastK(fastk_period)
        self.fastd = SmaCore(fastd_period)

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        return _fast_pair(self.fastk, self.fastd, bar.high, bar.low, bar.close)


def _fast_pair(fastk: FastK, fastd: SmaCore, high: float, low: float, close: float) -> Output | None:
    k = fastk.push(high, low, close)
    if k is None:
        return None
    d = fastd.push(k)
    return None if d is None else {"fastk": k, "fastd": d}


class STOCHRSI(CloseIndicator):
    """Stochastic RSI: STOCHF of the RSI series."""

    name = "STOCHRSI"
    outputs = ("fastk", "fastd")

    def __init__(
        self, timeperiod: int = 14, fastk_period: int = 5, fastd_period: int = 3, fastd_matype: int = 0
    ) -> None:
        super().__init__(
            timeperiod=timeperiod,
            fastk_period=fastk_period,
            fastd_period=fastd_period,
            fastd_matype=fastd_matype,
        )
        self.warmup = timeperiod + fastk_period - 1 + fastd_period - 1
        self.rsi = WilderGainLoss(timeperiod)
        self.fastk = FastK(fastk_period)
        self.fastd = SmaCore(fastd_period)

    def push(self, x: float) -> Output | None:
        self.count += 1
        r = rsi_step(self.rsi, x)
        if r is None:
            return None
        return _fast_pair(self.fastk, self.fastd, r, r, r)


class WILLR(Indicator):
    """Williams' %R, from -100 (close at the low) to 0 (close at the high)."""

    name = "WILLR"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        self.highest = RollingExtreme(timeperiod, largest=True)
        self.lowest = RollingExtreme(timeperiod, largest=False)

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        hi = self.highest.push(bar.high)[1]
        lo = self.lowest.push(bar.low)[1]
        if not self.highest.full:
            return None
        diff = hi - lo
        if is_zero_scaled(diff, abs(hi) + abs(lo)):
            return {"value": 0.0}
        return {"value": (hi - bar.close) / (diff / -100.0)}


class CCI(Indicator):
    """Commodity channel index on the typical price."""

    name = "CCI"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        # A circular buffer summed in slot order, as TA-Lib does (same rounding).
        self.buffer = [0.0] * timeperiod
        self.slot = 0

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        p = self.params["timeperiod"]
        last = (bar.high + bar.low + bar.close) / 3
        buf = self.buffer
        buf[self.slot] = last
        self.slot = (self.slot + 1) % p
        if self.count < p:
            return None
        average = 0.0
        for v in buf:
            average += v
        average /= p
        dev = 0.0
        for v in buf:
            dev += abs(v - average)
        dev /= p
        diff = last - average
        scale = abs(average)
        if is_zero_scaled(diff, scale) or is_zero_scaled(dev, scale):
            return {"value": 0.0}
        return {"value": diff / (0.015 * dev)}


class ULTOSC(Indicator):
    """Ultimate oscillator over three periods (weights 4:2:1, shortest first)."""

    name = "ULTOSC"

    def __init__(self, timeperiod1: int = 7, timeperiod2: int = 14, timeperiod3: int = 28) -> None:
        super().__init__(timeperiod1=timeperiod1, timeperiod2=timeperiod2, timeperiod3=timeperiod3)
        self.periods = sorted((timeperiod1, timeperiod2, timeperiod3))
        self.warmup = self.periods[2]
        self.terms: deque[tuple[float, float]] = deque(maxlen=self.periods[2])
        self.a = [0.0, 0.0, 0.0]
        self.b = [0.0, 0.0, 0.0]
        self.prev_close: float | None = None

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        prev_close, self.prev_close = self.prev_close, bar.close
        if prev_close is None:
            return None
        true_low = min(bar.low, prev_close)
        term = (bar.close - true_low, true_range(bar.high, bar.low, prev_close))
        terms = self.terms
        terms.append(term)
        b_index = self.count - 1
        a, b = self.a, self.b
        # Each total is primed with the ``p - 1`` terms before the first output, as TA-Lib does.
        for i, p in enumerate(self.periods):
            if b_index >= self.warmup - p + 1:
                a[i] += term[0]
                b[i] += term[1]
        if b_index < self.warmup:
            return None
        output = 0.0
        for i, weight in enumerate((4.0, 2.0, 1.0)):
            if not is_zero(b[i]):
                output += weight * (a[i] / b[i])
        for i, p in enumerate(self.periods):
            old = terms[-p]
            a[i] -= old[0]
            b[i] -= old[1]
        return {"value": 100.0 * (output / 7.0)}
