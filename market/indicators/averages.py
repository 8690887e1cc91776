"""Moving averages of the close: SMA, EMA, WMA, DEMA, TEMA, TRIMA, KAMA, T3.

TA-Lib conventions reproduced here (checked against TA-Lib's batch functions in the tests):

- EMA is seeded with the SMA of its first ``timeperiod`` inputs, then ``prev + k*(x - prev)`` with
  ``k = 2/(timeperiod+1)``; first value at index ``timeperiod-1``.
- DEMA = 2*EMA1 - EMA2 and TEMA = 3*EMA1 - 3*EMA2 + EMA3, each inner EMA seeded with the SMA of the
  first ``timeperiod`` outputs of the previous one, so warm-ups are 2*(p-1) and 3*(p-1).
- TRIMA is the SMA of an SMA: periods ((p+1)//2, (p+1)//2) for odd p, (p//2, p//2+1) for even p.
- KAMA (efficiency ratio over ``timeperiod`` changes, fast 2 / slow 30 smoothing constants squared) is
  seeded with the close one bar before its first output; warm-up ``timeperiod``. The efficiency ratio
  is 1 when the sum of absolute changes is zero or not above the (signed) net change.
- T3 (Tillson, ``vfactor`` default 0.7) chains six EMAs computed as ``k*x + (1-k)*prev``; each is seeded
  with the average of the first ``timeperiod`` values of the previous one, so the warm-up is 6*(p-1).
"""

from __future__ import annotations

from collections import deque

from market.indicators.base import CloseIndicator, EmaCore, Output, SmaCore, WmaCore, is_zero


class SMA(CloseIndicator):
    """Simple moving average."""

    name = "SMA"

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        self.core = SmaCore(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        v = self.core.push(x)
        return None if v is None else {"value": v}


class EMA(CloseIndicator):
    """Exponential moving average, SMA-seeded."""

    name = "EMA"

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        self.core = EmaCore(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        v = self.core.push(x)
        return None if v is None else {"value": v}


class WMA(CloseIndicator):
    """Linearly weighted moving average."""

    name = "WMA"

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        self.core = WmaCore(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        v = self.core.push(x)
        return None if v is None else {"value": v}


class DEMA(CloseIndicator):
    """Double exponential moving average: 2*EMA - EMA(EMA)."""

    name = "DEMA"

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = 2 * (timeperiod - 1)
        self.ema1 = EmaCore(timeperiod)
        self.ema2 = EmaCore(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        e1 = self.ema1.push(x)
        if e1 is None:
            return None
        e2 = self.ema2.push(e1)
        return None if e2 is None else {"value": 2.0 * e1 - e2}


class TEMA(CloseIndicator):
    """Triple exponential moving average: 3*EMA1 - 3*EMA2 + EMA3."""

    name = "TEMA"

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = 3 * (timeperiod - 1)
        self.ema1 = EmaCore(timeperiod)
        self.ema2 = EmaCore(timeperiod)
        self.ema3 = EmaCore(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        e1 = self.ema1.push(x)
        if e1 is None:
            return None
        e2 = self.ema2.push(e1)
        if e2 is None:
            return None
        e3 = self.ema3.push(e2)
        return None if e3 is None else {"value": 3.0 * e1 - 3.0 * e2 + e3}


class TRIMA(CloseIndicator):
    """Triangular moving average (an SMA of an SMA)."""

    name = "TRIMA"

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        if timeperiod % 2:
            first = second = (timeperiod + 1) // 2
        else:
            first, second = timeperiod // 2, timeperiod // 2 + 1
        self.sma1 = SmaCore(first)
        self.sma2 = SmaCore(second)

    def push(self, x: float) -> Output | None:
        self.count += 1
        s1 = self.sma1.push(x)
        if s1 is None:
            return None
        s2 = self.sma2.push(s1)
        return None if s2 is None else {"value": s2}


class KAMA(CloseIndicator):
    """Kaufman adaptive moving average."""

    name = "KAMA"
    _SLOWEST = 2.0 / (30 + 1)
    _DIFF = 2.0 / (2 + 1) - 2.0 / (30 + 1)

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.window: deque[float] = deque(maxlen=timeperiod + 1)
        self.sum_roc = 0.0
        self.kama: float | None = None

    def push(self, x: float) -> Output | None:
        self.count += 1
        window = self.window
        if len(window) < self.warmup:
            if window:
                self.sum_roc += abs(window[-1] - x)
            window.append(x)
            return None
        prev_x = window[-1]
        if self.kama is None:
            self.sum_roc += abs(prev_x - x)
            kama = prev_x
        else:
            self.sum_roc -= abs(window[0] - window[1])
            self.sum_roc += abs(x - prev_x)
            kama = self.kama
        window.append(x)
        period_roc = x - window[0]
        if self.sum_roc <= period_roc or is_zero(self.sum_roc):
            er = 1.0
        else:
            er = abs(period_roc / self.sum_roc)
        sc = er * self._DIFF + self._SLOWEST
        sc *= sc
        self.kama = (x - kama) * sc + kama
        return {"value": self.kama}


class T3(CloseIndicator):
    """Tillson T3: a volume-factor-weighted combination of six chained EMAs."""

    name = "T3"

    def __init__(self, timeperiod: int = 5, vfactor: float = 0.7) -> None:
        super().__init__(timeperiod=timeperiod, vfactor=vfactor)
        self.warmup = 6 * (timeperiod - 1)
        self.k = 2.0 / (timeperiod + 1.0)
        v = vfactor
        self.c1 = -(v * v * v)
        self.c2 = 3.0 * (v * v + v * v * v)
        self.c3 = -3.0 * (2.0 * v * v + v + v * v * v)
        self.c4 = 1.0 + 3.0 * v + v * v * v + 3.0 * v * v
        self.e: list[float] = []  # the seeded EMAs e1..e6 so far
        self.acc = 0.0  # running total used to seed the next EMA
        self.n = 0  # values accumulated into ``acc``

    def push(self, x: float) -> Output | None:
        self.count += 1
        period = self.params["timeperiod"]
        k = self.k
        omk = 1.0 - k
        e = self.e
        value = x
        for i in range(len(e)):
            e[i] = k * value + omk * e[i]
            value = e[i]
        if len(e) < 6:
            self.acc += value
            self.n += 1
            while self.n == period and len(e) < 6:
                seed = self.acc / period
                e.append(seed)
                self.acc, self.n = seed, 1
            if len(e) < 6:
                return None
        return {"value": self.c1 * e[5] + self.c2 * e[4] + self.c3 * e[3] + self.c4 * e[2]}
