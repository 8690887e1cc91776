"""Momentum of the close: MACD, PPO, APO, RSI, CMO, MOM, ROC, TRIX.

TA-Lib conventions reproduced here:

- MACD: both EMAs start at the same bar. The slow EMA is seeded with the SMA of the first ``slowperiod``
  closes; the fast EMA is seeded at that same bar (index ``slowperiod-1``) with the SMA of the
  ``fastperiod`` closes ending there -- not from the first close. The signal line is an SMA-seeded EMA of
  the MACD line; warm-up ``slowperiod-1 + signalperiod-1``. If ``slowperiod < fastperiod`` they are
  swapped.
- PPO/APO: ``matype`` 1 (EMA, TA-Lib's default) uses two ordinary SMA-seeded EMAs, each from the first
  close (unlike MACD); ``matype`` 0 uses SMAs. First value at index ``slowperiod-1``. PPO is 0 when the
  slow average is zero.
- RSI and CMO use Wilder smoothing seeded with the plain average gain/loss of the first ``timeperiod``
  changes (``avg = (avg*(p-1) + x)/p``); both are 0 when average gain + average loss is zero (so a
  perfectly flat window reads 0, not 50). TA-Lib's unstable period is 0 (its default): values start
  at index ``timeperiod``.
- ROC is ``(x/x[-p] - 1)*100`` and 0 when ``x[-p]`` is 0. TRIX is the one-bar ROC of a triple
  SMA-seeded EMA; warm-up ``3*(p-1)+1``.
"""

from __future__ import annotations

from collections import deque

from market.indicators.base import CloseIndicator, EmaCore, Lag, Output, SmaCore, is_zero


class MACD(CloseIndicator):
    """Moving average convergence/divergence: macd, macdsignal, macdhist."""

    name = "MACD"
    outputs = ("macd", "macdsignal", "macdhist")

    def __init__(self, fastperiod: int = 12, slowperiod: int = 26, signalperiod: int = 9) -> None:
        super().__init__(fastperiod=fastperiod, slowperiod=slowperiod, signalperiod=signalperiod)
        fast, slow = sorted((fastperiod, slowperiod))
        self.warmup = slow - 1 + signalperiod - 1
        self.pair = LateSeededPair(fast, slow)
        self.signal = EmaCore(signalperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        pair = self.pair.push(x)
        if pair is None:
            return None
        macd = pair[0] - pair[1]
        signal = self.signal.push(macd)
        if signal is None:
            return None
        return {"macd": macd, "macdsignal": signal, "macdhist": macd - signal}


class LateSeededPair:
    """A fast and a slow EMA that both start at bar ``slow-1`` (TA-Lib's MACD).

    Each EMA is seeded with the SMA of its own period ending at bar ``slow-1``.
    """

    def __init__(self, fast: int, slow: int) -> None:
        self.fast = fast
        self.slow = slow
        self.window: deque[float] = deque(maxlen=slow)
        self.fast_value: float | None = None
        self.slow_value: float | None = None
        self.k_fast = 2.0 / (fast + 1)
        self.k_slow = 2.0 / (slow + 1)

    def push(self, x: float) -> tuple[float, float] | None:
        if self.slow_value is not None and self.fast_value is not None:
            self.fast_value = (x - self.fast_value) * self.k_fast + self.fast_value
            self.slow_value = (x - self.slow_value) * self.k_slow + self.slow_value
            return self.fast_value, self.slow_value
        window = self.window
        window.append(x)
        if len(window) < self.slow:
            return None
        slow_total = 0.0
        for v in window:
            slow_total += v
        fast_total = 0.0
        for i in range(self.slow - self.fast, self.slow):
            fast_total += window[i]
        self.fast_value = fast_total / self.fast
        self.slow_value = slow_total / self.slow
        window.clear()  # not needed any more
        return self.fast_value, self.slow_value


class _PriceOscillator(CloseIndicator):
    def __init__(self, fastperiod: int = 12, slowperiod: int = 26, matype: int = 1) -> None:
        super().__init__(fastperiod=fastperiod, slowperiod=slowperiod, matype=matype)
        fast, slow = sorted((fastperiod, slowperiod))
        self.warmup = slow - 1
        self.fast: EmaCore | SmaCore = EmaCore(fast) if matype == 1 else SmaCore(fast)
        self.slow: EmaCore | SmaCore = EmaCore(slow) if matype == 1 else SmaCore(slow)

    def _pair(self, x: float) -> tuple[float, float] | None:
        self.count += 1
        fast = self.fast.push(x)
        slow = self.slow.push(x)
        return None if fast is None or slow is None else (fast, slow)


class APO(_PriceOscillator):
    """Absolute price oscillator: fast average - slow average."""

    name = "APO"

    def push(self, x: float) -> Output | None:
        pair = self._pair(x)
        return None if pair is None else {"value": pair[0] - pair[1]}


class PPO(_PriceOscillator):
    """Percentage price oscillator: 100 * (fast - slow) / slow."""

    name = "PPO"

    def push(self, x: float) -> Output | None:
        pair = self._pair(x)
        if pair is None:
            return None
        fast, slow = pair
        return {"value": ((fast - slow) / slow) * 100.0 if not is_zero(slow) else 0.0}


class WilderGainLoss:
    """TA-Lib's RSI/CMO core: Wilder-smoothed average gain and loss of successive changes."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.prev: float | None = None
        self.gain = 0.0
        self.loss = 0.0
        self.n = 0  # changes seen

    def push(self, x: float) -> tuple[float, float] | None:
        prev = self.prev
        self.prev = x
        if prev is None:
            return None
        diff = x - prev
        p = self.period
        self.n += 1
        if self.n <= p:
            if diff < 0:
                self.loss -= diff
            else:
                self.gain += diff
            if self.n < p:
                return None
        else:
            self.loss *= p - 1
            self.gain *= p - 1
            if diff < 0:
                self.loss -= diff
            else:
                self.gain += diff
        self.loss /= p
        self.gain /= p
        return self.gain, self.loss


class RSI(CloseIndicator):
    """Relative strength index (Wilder)."""

    name = "RSI"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.core = WilderGainLoss(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        v = rsi_step(self.core, x)
        return None if v is None else {"value": v}


def rsi_step(core: WilderGainLoss, x: float) -> float | None:
    gl = core.push(x)
    if gl is None:
        return None
    gain, loss = gl
    total = gain + loss
    return 100.0 * (gain / total) if not is_zero(total) else 0.0


class CMO(CloseIndicator):
    """Chande momentum oscillator, with TA-Lib's Wilder-smoothed gains and losses."""

    name = "CMO"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.core = WilderGainLoss(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        gl = self.core.push(x)
        if gl is None:
            return None
        gain, loss = gl
        total = gain + loss
        return {"value": 100.0 * ((gain - loss) / total) if not is_zero(total) else 0.0}


class MOM(CloseIndicator):
    """Momentum: x - x[timeperiod bars ago]."""

    name = "MOM"

    def __init__(self, timeperiod: int = 10) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.lag = Lag(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        old = self.lag.push(x)
        return None if old is None else {"value": x - old}


def _roc(x: float, old: float) -> float:
    return ((x / old) - 1.0) * 100.0 if old != 0.0 else 0.0


class ROC(CloseIndicator):
    """Rate of change in percent: (x / x[-timeperiod] - 1) * 100."""

    name = "ROC"

    def __init__(self, timeperiod: int = 10) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.lag = Lag(timeperiod)

    def push(self, x: float) -> Output | None:
        self.count += 1
        old = self.lag.push(x)
        return None if old is None else {"value": _roc(x, old)}


class TRIX(CloseIndicator):
    """One-bar rate of change (percent) of a triple exponential moving average."""

    name = "TRIX"

    def __init__(self, timeperiod: int = 30) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = 3 * (timeperiod - 1) + 1
        self.emas = (EmaCore(timeperiod), EmaCore(timeperiod), EmaCore(timeperiod))
        self.prev: float | None = None

    def push(self, x: float) -> Output | None:
        self.count += 1
        v: float | None = x
        for ema in self.emas:
            assert v is not None
            v = ema.push(v)
            if v is None:
                return None
        assert v is not None
        prev, self.prev = self.prev, v
        return None if prev is None else {"value": _roc(v, prev)}
