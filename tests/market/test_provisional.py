"""The provisional-candle throttle (pure): at most K updates per second per series, never losing a
candle's last state."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from market.provisional import ProvisionalCandle, ProvisionalThrottle
from tests.support.live_samples import T0, provisional


def test_throttle_limits_rate_and_keeps_the_final_state() -> None:
    throttle = ProvisionalThrottle(max_per_second=2)
    sent = []
    for tenth in range(0, 30):  # 10 updates per second for 3 s of minute 0
        sent += throttle.offer(provisional(0, tenth / 10, close=str(tenth)))
    assert [p.as_of.second + p.as_of.microsecond / 1e6 for p in sent] == [0, 0.5, 1.0, 1.5, 2.0, 2.5]
    # The last state (close 29 at 2.9 s) is held, and comes out when the next candle starts...
    out = throttle.offer(provisional(1, 0.1, close="100"))
    assert [p.close for p in out] == [Decimal(29), Decimal(100)]
    # ...or when its slot comes.
    assert throttle.offer(provisional(1, 0.2, close="101")) == []
    assert throttle.due(T0 + timedelta(minutes=1, seconds=0.3)) == []
    assert [p.close for p in throttle.due(T0 + timedelta(minutes=1, seconds=0.6))] == [Decimal(101)]
    assert throttle.drain() == []
    # Series are independent.
    other = ProvisionalCandle(
        **{
            **{f: getattr(provisional(1, 0.3), f) for f in ProvisionalCandle.__dataclass_fields__},
            "symbol": "ETH-USDT",
        }
    )
    assert throttle.offer(other) == [other]
