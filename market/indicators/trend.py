"""Trend and direction: ADX, PLUS_DI, MINUS_DI, AROON, AROONOSC, SAR, LINEARREG.

TA-Lib conventions reproduced here:

- Directional movement: +DM counts when ``high - prev high`` is positive and larger than
  ``prev low - low`` (and symmetrically for -DM). +DM, -DM and the true range are first summed over the
  first ``timeperiod - 1`` changes, then Wilder-smoothed (``s = s - s/p + x``), so the first DI (index
  ``timeperiod``) already includes one smoothing step. A DI is 0 when the smoothed true range is zero.
  With ``timeperiod=1`` TA-Lib returns the unsmoothed ratio DM/TR as a fraction (0..1), not a percentage;
  this is reproduced.
- ADX is the plain average of the first ``timeperiod`` DX values, then Wilder-smoothed
  (``adx = (adx*(p-1) + dx)/p``); a bar whose DX is undefined (zero range or zero DI sum) leaves ADX
  unchanged. Warm-up ``2*timeperiod - 1``. TA-Lib's unstable period is 0 (its default).
- AROON looks at ``timeperiod + 1`` bars; on ties the most recent extreme counts. AROONOSC =
  ``100/p * (index of highest high - index of lowest low)``.
- SAR starts at the second bar: the initial direction is short when the second bar has a positive
  -DM (down move larger than up move), long otherwise; the initial SAR is the first bar's low (long) or
  high (short) and the extreme point the second bar's high (low). The acceleration factor starts at
  ``acceleration`` (capped by ``maximum``) and grows by ``acceleration`` at each new extreme.
- LINEARREG is the least-squares line over the last ``timeperiod`` closes evaluated at the latest bar.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from market.indicators.base import Bar, CloseIndicator, Indicator, Output, RollingExtreme, is_zero, true_range


class DirectionalMovement:
    """Wilder-smoothed +DM, -DM and true range with TA-Lib's seeding."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.n = 0  # bars seen
        self.prev: tuple[float, float, float] | None = None
        self.plus = 0.0
        self.minus = 0.0
        self.tr = 0.0

    def push(self, high: float, low: float, close: float) -> bool:
        """Consume a bar; True once the smoothed values are defined (from bar index ``period``)."""
        prev = self.prev
        self.prev = (high, low, close)
        self.n += 1
        if prev is None:
            return False
        prev_high, prev_low, prev_close = prev
        diff_p = high - prev_high
        diff_m = prev_low - low
        plus_dm = diff_p if diff_p > 0 and diff_p > diff_m else 0.0
        minus_dm = diff_m if diff_m > 0 and diff_p < diff_m else 0.0
        tr = true_range(high, low, prev_close)
        p = self.period
        if self.n <= p:
            self.plus += plus_dm
            self.minus += minus_dm
            self.tr += tr
            return False
        self.plus = self.plus - self.plus / p + plus_dm
        self.minus = self.minus - self.minus / p + minus_dm
        self.tr = self.tr - self.tr / p + tr
        return True

    def di(self) -> tuple[float, float] | None:
        """(+DI, -DI), or None when the smoothed true range is zero."""
        if is_zero(self.tr):
            return None
        return 100.0 * (self.plus / self.tr), 100.0 * (self.minus / self.tr)


class _DI(Indicator):
    plus_side = True

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.dm = DirectionalMovement(timeperiod)

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        if not self.dm.push(bar.high, bar.low, bar.close):
            return None
        di = self.dm.di()
        if di is None:
            return {"value": 0.0}
        value = di[0] if self.plus_side else di[1]
        # TA-Lib's timeperiod=1 case returns the raw ratio DM/TR, not a percentage.
        return {"value": value / 100.0 if self.params["timeperiod"] == 1 else value}


class PLUS_DI(_DI):  # TA-Lib's name
    """Plus directional indicator."""

    name = "PLUS_DI"
    plus_side = True


class MINUS_DI(_DI):  # TA-Lib's name
    """Minus directional indicator."""

    name = "MINUS_DI"
    plus_side = False


class ADX(Indicator):
    """Average directional movement index."""

    name = "ADX"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = 2 * timeperiod - 1
        self.dm = DirectionalMovement(timeperiod)
        self.sum_dx = 0.0
        self.adx: float | None = None

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        if not self.dm.push(bar.high, bar.low, bar.close):
            return None
        dx = None
        di = self.dm.di()
        if di is not None:
            total = di[0] + di[1]
            if not is_zero(total):
                dx = 100.0 * (abs(di[1] - di[0]) / total)
        p = self.params["timeperiod"]
        if self.adx is None:
            if dx is not None:
                self.sum_dx += dx
            if self.count - 1 < self.warmup:
                return None
            self.adx = self.sum_dx / p
        elif dx is not None:
            self.adx = (self.adx * (p - 1) + dx) / p
        return {"value": self.adx}


class AROON(Indicator):
    """Aroon down/up: how recent the lowest low / highest high of the last ``timeperiod+1`` bars is."""

    name = "AROON"
    outputs: ClassVar[tuple[str, ...]] = ("aroondown", "aroonup")

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.factor = 100.0 / timeperiod
        self.highest = RollingExtreme(timeperiod + 1, largest=True)
        self.lowest = RollingExtreme(timeperiod + 1, largest=False)

    def _indices(self, bar: Bar) -> tuple[int, int, int] | None:
        self.count += 1
        hi_idx = self.highest.push(bar.high)[0]
        lo_idx = self.lowest.push(bar.low)[0]
        if not self.highest.full:
            return None
        return self.highest.index, hi_idx, lo_idx

    def update_bar(self, bar: Bar) -> Output | None:
        idx = self._indices(bar)
        if idx is None:
            return None
        today, hi_idx, lo_idx = idx
        p = self.params["timeperiod"]
        return {
            "aroondown": self.factor * (p - (today - lo_idx)),
            "aroonup": self.factor * (p - (today - hi_idx)),
        }


class AROONOSC(AROON):
    """Aroon oscillator: aroon up - aroon down."""

    name = "AROONOSC"
    outputs = ("value",)

    def update_bar(self, bar: Bar) -> Output | None:
        idx = self._indices(bar)
        if idx is None:
            return None
        return {"value": self.factor * (idx[1] - idx[2])}


class SAR(Indicator):
    """Parabolic stop-and-reverse."""

    name = "SAR"

    def __init__(self, acceleration: float = 0.02, maximum: float = 0.2) -> None:
        super().__init__(acceleration=acceleration, maximum=maximum)
        self.warmup = 1
        self.step = min(acceleration, maximum)
        self.maximum = maximum
        self.af = self.step
        self.prev: tuple[float, float] | None = None  # previous bar's (high, low)
        self.is_long = True
        self.sar = 0.0
        self.ep = 0.0

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        high, low = bar.high, bar.low
        prev = self.prev
        self.prev = (high, low)
        if prev is None:
            return None
        if self.count == 2:
            diff_m = prev[1] - low
            diff_p = high - prev[0]
            self.is_long = not (diff_m > 0 and diff_p < diff_m)
            if self.is_long:
                self.ep, self.sar = high, prev[1]
            else:
                self.ep, self.sar = low, prev[0]
            prev = (high, low)
        prev_high, prev_low = prev
        af, sar, ep = self.af, self.sar, self.ep
        if self.is_long:
            if low <= sar:
                self.is_long = False
                sar = max(ep, prev_high, high)
                out = sar
                af = self.step
                ep = low
                sar = max(sar + af * (ep - sar), prev_high, high)
            else:
                out = sar
                if high > ep:
                    ep = high
                    af = min(af + self.step, self.maximum)
                sar = min(sar + af * (ep - sar), prev_low, low)
        else:
            if high >= sar:
                self.is_long = True
                sar = min(ep, prev_low, low)
                out = sar
                af = self.step
                ep = high
                sar = min(sar + af * (ep - sar), prev_low, low)
            else:
                out = sar
                if low < ep:
                    ep = low
                    af = min(af + self.step, self.maximum)
                sar = max(sar + af * (ep - sar), prev_high, high)
        self.af, self.sar, self.ep = af, sar, ep
        return {"value": out}


class LINEARREG(CloseIndicator):
    """Linear regression: the least-squares line over ``timeperiod`` closes, at the latest bar."""

    name = "LINEARREG"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        p = float(timeperiod)
        self.sum_x = p * (p - 1) * 0.5
        sum_x_sqr = p * (p - 1) * (2 * p - 1) / 6
        self.divisor = self.sum_x * self.sum_x - p * sum_x_sqr
        self.window: deque[float] = deque(maxlen=timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        window = self.window
        window.append(x)
        p = self.params["timeperiod"]
        if len(window) < p:
            return None
        sum_y = 0.0
        sum_xy = 0.0
        lag = p - 1
        for y in window:  # oldest first: x = lag, as TA-Lib sums
            sum_y += y
            sum_xy += lag * y
            lag -= 1
        m = (p * sum_xy - self.sum_x * sum_y) / self.divisor
        b = (sum_y - m * self.sum_x) / p
        return {"value": b + m * (p - 1)}
