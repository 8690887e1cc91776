"""Volume-based: OBV, AD, ADOSC, MFI and the session VWAP.

TA-Lib conventions reproduced here:

- OBV starts at the first bar's volume (not 0), then adds (subtracts) the volume of each bar that
  closes above (below) the previous close; unchanged closes add nothing.
- AD (Chaikin accumulation/distribution) accumulates ``((c-l) - (h-c)) / (h-l) * volume`` from 0; a bar
  with ``h - l <= 0`` (a flat bar) adds nothing.
- ADOSC is EMA(fast) - EMA(slow) of AD, both EMAs seeded with the first AD value (not an SMA) and run
  as ``k*ad + (1-k)*ema``; warm-up ``slowperiod - 1``.
- MFI sums positive and negative money flow (typical price * volume, signed by the change of the typical
  price) over ``timeperiod`` bars; warm-up ``timeperiod``. A change within ~90 ulp of the prices counts as
  no movement (no flow). After a whole window without money flow the running sums are reset to exactly
  zero (dropping add/subtract residue); the index is 0 when the total flow is not positive, and the
  positive sum is clamped into [0, total].

Beyond TA-Lib:

- VWAP is anchored to the UTC day: it restarts at each 00:00 UTC, and a candle belongs to the session of
  its open time. It is cumulative(typical price * volume) / cumulative(volume) with the typical price
  (h+l+c)/3; while the session has no volume yet (flat candles only) it is the typical price of the
  latest candle. Warm-up 0.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta

from market.indicators.base import Bar, Indicator, Output, is_zero_scaled
from market.types import EPOCH

_DAY = timedelta(days=1)


class OBV(Indicator):
    """On-balance volume."""

    name = "OBV"

    def __init__(self) -> None:
        super().__init__()
        self.obv = 0.0
        self.prev_close: float | None = None

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        prev = self.prev_close
        self.prev_close = bar.close
        if prev is None:
            self.obv = bar.volume
        elif bar.close > prev:
            self.obv += bar.volume
        elif bar.close < prev:
            self.obv -= bar.volume
        return {"value": self.obv}


def _ad_step(ad: float, bar: Bar) -> float:
    rng = bar.high - bar.low
    if rng > 0.0:
        ad += (((bar.close - bar.low) - (bar.high - bar.close)) / rng) * bar.volume
    return ad


class AD(Indicator):
    """Chaikin accumulation/distribution line."""

    name = "AD"

    def __init__(self) -> None:
        super().__init__()
        self.ad = 0.0

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        self.ad = _ad_step(self.ad, bar)
        return {"value": self.ad}


class ADOSC(Indicator):
    """Chaikin A/D oscillator: EMA(fast) - EMA(slow) of the A/D line."""

    name = "ADOSC"

    def __init__(self, fastperiod: int = 3, slowperiod: int = 10) -> None:
        super().__init__(fastperiod=fastperiod, slowperiod=slowperiod)
        self.warmup = max(fastperiod, slowperiod) - 1
        self.fast_k = 2.0 / (fastperiod + 1)
        self.slow_k = 2.0 / (slowperiod + 1)
        self.ad = 0.0
        self.fast = 0.0
        self.slow = 0.0

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        self.ad = ad = _ad_step(self.ad, bar)
        if self.count == 1:
            self.fast = self.slow = ad
        else:
            self.fast = (self.fast_k * ad) + ((1.0 - self.fast_k) * self.fast)
            self.slow = (self.slow_k * ad) + ((1.0 - self.slow_k) * self.slow)
        if self.count <= self.warmup:
            return None
        return {"value": self.fast - self.slow}


class MFI(Indicator):
    """Money flow index."""

    name = "MFI"

    def __init__(self, timeperiod: int = 14) -> None:
        super().__init__(timeperiod=timeperiod)
        self.warmup = timeperiod
        self.flows: deque[tuple[float, float]] = deque(maxlen=timeperiod)
        self.pos = 0.0
        self.neg = 0.0
        self.null_run = 0
        self.prev_typ: float | None = None

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        typ = (bar.high + bar.low + bar.close) / 3.0
        prev, self.prev_typ = self.prev_typ, typ
        if prev is None:
            return None
        diff = typ - prev
        mf = 0.0 if is_zero_scaled(diff, abs(typ) + abs(prev)) else typ * bar.volume
        flow = (0.0, mf) if diff < 0.0 else (mf, 0.0)
        flows = self.flows
        period = self.warmup
        if len(flows) == period:
            old = flows[0]
            self.pos -= old[0]
            self.neg -= old[1]
        flows.append(flow)
        self.pos += flow[0]
        self.neg += flow[1]
        # A whole window without money flow: the sums are exactly zero, drop the rounding residue.
        self.null_run = self.null_run + 1 if mf == 0.0 else 0
        if self.null_run >= period:
            self.null_run = period
            self.pos = self.neg = 0.0
        if len(flows) < period:
            return None
        total = self.pos + self.neg
        if total <= 0.0:
            return {"value": 0.0}
        pos = min(max(self.pos, 0.0), total)
        return {"value": 100.0 * (pos / total)}


class VWAP(Indicator):
    """Volume-weighted average price anchored to the UTC day of each candle's open time."""

    name = "VWAP"

    def __init__(self) -> None:
        super().__init__()
        self.session: int | None = None
        self.pv = 0.0
        self.volume = 0.0

    def update_bar(self, bar: Bar) -> Output | None:
        self.count += 1
        session = (bar.open_time - EPOCH) // _DAY
        if session != self.session:
            self.session = session
            self.pv = 0.0
            self.volume = 0.0
        typ = (bar.high + bar.low + bar.close) / 3.0
        self.pv += typ * bar.volume
        self.volume += bar.volume
        return {"value": self.pv / self.volume if self.volume > 0.0 else typ}
