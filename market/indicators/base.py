"""The indicator interface and the small streaming building blocks every family shares.

An indicator is a small picklable state object. It is fed closed candles, oldest first, one at a time,
and after its warm-up it returns a dict of named float outputs for every candle (``None`` before).
Prices are converted from ``Decimal`` to ``float`` once per candle (see :class:`Bar`), because the
reference implementation (TA-Lib) computes in doubles and the values must agree with it.

The building blocks (``SmaCore``, ``EmaCore``, ...) consume one float at a time and return ``float |
None``; they reproduce TA-Lib's own order of floating-point operations (running sums built the same
way, the same seeds) so that the results agree with TA-Lib's batch computation to the last few ulps.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

from market.types import Candle

Output = dict[str, float]

# TA-Lib's zero tests (ta_utility.h): an absolute band for values that are not price-scaled, and a
# band relative to the operands' magnitude ("scale-aware") for differences of prices.
TA_EPSILON = 1e-14


def is_zero(v: float) -> bool:
    """TA-Lib ``TA_IS_ZERO``: ``|v| < 1e-14``."""
    return -TA_EPSILON < v < TA_EPSILON


def is_zero_scaled(v: float, scale: float) -> bool:
    """TA-Lib ``TA_IS_ZERO_SCALED``: ``|v| <= 1e-14 * scale`` (a relative dead zone of ~90 ulp)."""
    return abs(v) <= TA_EPSILON * scale


class Bar(NamedTuple):
    """A candle's fields as floats, plus its open time (used by session-anchored indicators)."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    open_time: datetime

    @classmethod
    def from_candle(cls, candle: Candle) -> Bar:
        return cls(
            float(candle.open),
            float(candle.high),
            float(candle.low),
            float(candle.close),
            float(candle.volume),
            candle.open_time,
        )


class Indicator:
    """Base class of every indicator: ``update(candle) -> dict | None`` after ``warmup`` candles.

    ``warmup`` is the number of candles consumed before the first output (TA-Lib's lookback where
    TA-Lib has the indicator): the candle with zero-based index ``warmup`` yields the first value.
    ``outputs`` names the keys of the returned dict; single-output indicators use ``"value"``.
    """

    name: ClassVar[str] = ""
    outputs: ClassVar[tuple[str, ...]] = ("value",)

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        self.warmup: int = 0
        self.count: int = 0  # candles consumed so far

    def update(self, candle: Candle) -> Output | None:
        """Consume one closed candle; return the outputs stamped at its close, or None in warm-up."""
        return self.update_bar(Bar.from_candle(candle))

    def update_bar(self, bar: Bar) -> Output | None:
        """Same as :meth:`update` on a candle already converted to floats."""
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        return self.count > self.warmup

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class CloseIndicator(Indicator):
    """An indicator of the close price only; subclasses implement ``push(x)``."""

    def update_bar(self, bar: Bar) -> Output | None:
        return self.push(bar.close)

    def push(self, x: float) -> Output | None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Streaming building blocks on floats.


class SmaCore:
    """Simple moving average with TA-Lib's running total (add newest, divide, drop oldest)."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.window: deque[float] = deque(maxlen=period)
        self.total = 0.0

    def push(self, x: float) -> float | None:
        self.total += x
        self.window.append(x)
        if len(self.window) < self.period:
            return None
        out = self.total / self.period
        self.total -= self.window[0]
        return out


class EmaCore:
    """EMA with TA-Lib's seed: the SMA of the first ``period`` inputs, then ``prev + k*(x - prev)``."""

    def __init__(self, period: int, k: float | None = None) -> None:
        self.period = period
        self.k = 2.0 / (period + 1) if k is None else k
        self.n = 0
        self.acc = 0.0
        self.value: float | None = None

    def push(self, x: float) -> float | None:
        if self.value is not None:
            self.value = (x - self.value) * self.k + self.value
            return self.value
        self.acc += x
        self.n += 1
        if self.n == self.period:
            self.value = self.acc / self.period
        return self.value


class WmaCore:
    """Linearly weighted moving average (weights 1..period), TA-Lib's running-sum algorithm."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.divider = period * (period + 1) / 2.0
        self.window: deque[float] = deque(maxlen=period)
        self.period_sum = 0.0
        self.period_sub = 0.0
        self.trailing = 0.0

    def push(self, x: float) -> float | None:
        window = self.window
        n = len(window)
        if n < self.period - 1:
            window.append(x)
            self.period_sub += x
            self.period_sum += x * (n + 1)
            return None
        self.period_sub += x
        self.period_sub -= self.trailing
        self.period_sum += x * self.period
        window.append(x)
        self.trailing = window[0]
        out = self.period_sum / self.divider
        self.period_sum -= self.period_sub
        return out


class RollingExtreme:
    """Max (or min) over the last ``period`` inputs and the index of its most recent occurrence."""

    def __init__(self, period: int, largest: bool) -> None:
        self.period = period
        self.largest = largest
        self.items: deque[tuple[int, float]] = deque()
        self.index = -1

    def push(self, x: float) -> tuple[int, float]:
        self.index += 1
        items = self.items
        if self.largest:
            while items and items[-1][1] <= x:
                items.pop()
        else:
            while items and items[-1][1] >= x:
                items.pop()
        items.append((self.index, x))
        if items[0][0] <= self.index - self.period:
            items.popleft()
        return items[0]

    @property
    def full(self) -> bool:
        return self.index + 1 >= self.period


class Lag:
    """The input ``period`` steps ago (None until there is one)."""

    def __init__(self, period: int) -> None:
        self.window: deque[float] = deque(maxlen=period + 1)

    def push(self, x: float) -> float | None:
        self.window.append(x)
        if len(self.window) < (self.window.maxlen or 0):
            return None
        return self.window[0]


def true_range(high: float, low: float, prev_close: float) -> float:
    """TA-Lib ``TRUE_RANGE``: the largest of high-low, |high-prev close|, |low-prev close|."""
    tr = high - low
    t = abs(high - prev_close)
    if t > tr:
        tr = t
    t = abs(low - prev_close)
    if t > tr:
        tr = t
    return tr
