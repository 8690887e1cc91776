"""Indicators beyond TA-Lib: KELTNER, DONCHIAN, SUPERTREND, ICHIMOKU.

They reuse the TA-Lib-compatible building blocks (SMA-seeded EMA, Wilder ATR seeded with the average of
the first true ranges) so their parts agree with the TA-Lib indicators of the same name.

- KELTNER: middle = EMA(close, ``timeperiod``), upper/lower = middle +/- ``multiplier`` * ATR(``atr_period``);
  warm-up ``max(timeperiod - 1, atr_period)``.
- DONCHIAN: upper = highest high, lower = lowest low over ``timeperiod`` bars including the current one,
  middle = their mean; warm-up ``timeperiod - 1``.
- SUPERTREND (the common TradingView formulation): with hl2 = (h+l)/2 and ATR(``timeperiod``),
  ``up = hl2 - m*ATR`` is raised to the previous ``up`` while the previous close stayed above it, and
  ``dn = hl2 + m*ATR`` is lowered to the previous ``dn`` while the previous close stayed below it. The
  trend starts up (+1), turns down (-1) when the close falls below the previous ``up`` and up again
  when it rises above the previous ``dn``. Outputs ``supertrend`` (``up`` in an up-trend, ``dn`` in a
  down-trend), ``direction`` (+1/-1), ``up``, ``dn``; warm-up ``timeperiod``.
- ICHIMOKU: tenkan/kijun/senkou_b are the midpoints (highest high + lowest low)/2 over 9/26/52 bars and
  senkou_a = (tenkan + kijun)/2, all computed from candles up to the stamped one. Charts display the
  senkou spans ``kijun_period`` bars ahead; that shift is a presentation matter, the values here are
  stamped with the candle that completes them (no look-ahead). Warm-up ``max(periods) - 1``.
"""

from __future__ import annotations

from market.indicators.base import Bar, EmaCore, Indicator, Output, RollingExtreme
from market.indicators.volatility import AtrCore


class KELTNER(Indicator):
    """Keltner channels: EMA of the close +/- a multiple of the ATR."""

    name = "KELTNER"
    outputs = ("upper", "middle", "lower")

    def __init__(self, timeperiod: int = 20, atr_period: int = 10, multiplier: float = 2.0) -> None:
        super().__init__(timeperiod=timeperiod, atr_period=atr_period, multiplier=multiplier)
        self.warmup = max(timeperiod - 1, atr_period)
        self.ema = EmaCore(timeperiod)
        self.atr = AtrCore(atr_period)

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        mid = self.ema.push(bar.close)
        atr = self.atr.push(bar.high, bar.low, bar.close)
        if mid is None or atr is None:
            return None
        width = self.params["multiplier"] * atr
        return {"upper": mid + width, "middle": mid, "lower": mid - width}


class MidRange:
    """Highest high, lowest low and their midpoint over ``period`` bars."""

    def __init__(self, period: int) -> None:
        self.highest = RollingExtreme(period, largest=True)
        self.lowest = RollingExtreme(period, largest=False)

    def push(self, high: float, low: float) -> tuple[float, float] | None:
        hi = self.highest.push(high)[1]
        lo = self.lowest.push(low)[1]
        return (hi, lo) if self.highest.full else None


class DONCHIAN(Indicator):
    """Donchian channels: highest high, lowest low and their midpoint."""

    name = "DONCHIAN"
    outputs = ("upper", "middle", "lower")

    def __init__(self, timeperiod: int = 20) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod - 1
        self.range = MidRange(timeperiod)

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        r = self.range.push(bar.high, bar.low)
        if r is None:
            return None
        return {"upper": r[0], "middle": (r[0] + r[1]) / 2.0, "lower": r[1]}


class SUPERTREND(Indicator):
    """SuperTrend: an ATR trailing band that flips side when the close crosses it."""

    name = "SUPERTREND"
    outputs = ("supertrend", "direction", "up", "dn")

    def __init__(self, timeperiod: int = 10, multiplier: float = 3.0) -> None:
        super().__init__(timeperiod=timeperiod, multiplier=multiplier)
        self.warmup = timeperiod
        self.atr = AtrCore(timeperiod)
        self.up: float | None = None
        self.dn = 0.0
        self.direction = 1.0
        self.prev_close = 0.0

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        atr = self.atr.push(bar.high, bar.low, bar.close)
        prev_close, self.prev_close = self.prev_close, bar.close
        if atr is None:
            return None
        hl2 = (bar.high + bar.low) / 2.0
        m = self.params["multiplier"]
        up = hl2 - m * atr
        dn = hl2 + m * atr
        up1 = up if self.up is None else self.up
        dn1 = dn if self.up is None else self.dn
        if prev_close > up1:
            up = max(up, up1)
        if prev_close < dn1:
            dn = min(dn, dn1)
        if self.direction < 0 and bar.close > dn1:
            self.direction = 1.0
        elif self.direction > 0 and bar.close < up1:
            self.direction = -1.0
        self.up, self.dn = up, dn
        return {
            "supertrend": up if self.direction > 0 else dn,
            "direction": self.direction,
            "up": up,
            "dn": dn,
        }


class ICHIMOKU(Indicator):
    """Ichimoku cloud lines: tenkan, kijun, senkou_a, senkou_b (unshifted, see module docstring)."""

    name = "ICHIMOKU"
    outputs = ("tenkan", "kijun", "senkou_a", "senkou_b")

    def __init__(self, tenkan_period: int = 9, kijun_period: int = 26, senkou_b_period: int = 52) -> None:
        super().__init__(
            tenkan_period=tenkan_period, kijun_period=kijun_period, senkou_b_period=senkou_b_period
        )
        self.warmup = max(tenkan_period, kijun_period, senkou_b_period) - 1
        self.ranges = (MidRange(tenkan_period), MidRange(kijun_period), MidRange(senkou_b_period))

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        mids: list[float] = []
        for r in self.ranges:
            hl = r.push(bar.high, bar.low)
            if hl is not None:
                mids.append((hl[0] + hl[1]) / 2.0)
        if self.count <= self.warmup:
            return None
        tenkan, kijun, senkou_b = mids
        return {"tenkan": tenkan, "kijun": kijun, "senkou_a": (tenkan + kijun) / 2.0, "senkou_b": senkou_b}
