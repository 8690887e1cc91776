"""Oracles and generators for the SeriesWindows tests: the tapes, ``reference`` (candles computed straight
from the trades with integer milliseconds), and trade streams generated and shuffled within the grace.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Context, Decimal, localcontext
from functools import cache
from pathlib import Path

from hypothesis import strategies as st

from market.timeframes import TF_1D, TF_1H, TF_1M, TF_4H, TF_5M, TF_15M, Timeframe
from market.types import Candle, Trade, ms_from_utc, utc_from_ms
from market.windowing import Emitted, SeriesWindows
from tests.support.tapes import tape_trades

TAPES = Path(__file__).resolve().parents[1] / "data" / "tapes"
XRP = TAPES / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
XRP_1M = TAPES / "XRP-ETH-exchange-candles-1m.csv"
XRP_5M = TAPES / "XRP-ETH-exchange-candles-5m.csv"
BTC = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
MATIC = TAPES / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"
MATIC_CANDLE = TAPES / "MATIC-USDT-SWAP-candle-1m-2023-08-20T1601Z.csv"
T0_MS = 1_704_110_400_000  # 2024-01-01 12:00:00 UTC
GRACE = timedelta(seconds=2)
MIN = 60_000
Row = tuple[object, ...]


def trade(ms: int, price: str = "100", tid: int = 1, size: str = "1") -> Trade:
    """A BTC-USDT trade ``ms`` after 2024-01-01 12:00 UTC."""
    return Trade("okx", "BTC-USDT", tid, Decimal(price), Decimal(size), "buy", utc_from_ms(T0_MS + ms))


def at(ms: int) -> datetime:
    return utc_from_ms(T0_MS + ms)


def run(windows: SeriesWindows, trades: list[Trade] | tuple[Trade, ...], end: datetime | None) -> Emitted:
    out = windows.on_trades(trades)
    if end is None:
        return out
    fin = windows.finish(end)
    return Emitted(out.candles + fin.candles, out.late + fin.late, out.duplicates)


def row(c: Candle) -> Row:
    return (
        c.timeframe, ms_from_utc(c.close_time), c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
        c.trade_count, c.vwap, c.first_trade_id, c.last_trade_id,
    )  # fmt: skip


VWAP = Context(prec=28)


def reference(
    trades: list[Trade] | tuple[Trade, ...], tf: Timeframe, end_ms: int, flat: bool = True
) -> list[Row]:
    """Candles of ``tf`` straight from the trades: bucket ms // span, sort by (ms, id), scan; flat candles
    for empty buckets after the first trade; only buckets closing at or before ``end_ms``."""
    span = tf.seconds * 1000
    buckets: dict[int, list[tuple[int, int, Decimal, Decimal]]] = {}
    for t in trades:
        ms = ms_from_utc(t.ts_event)
        buckets.setdefault(ms // span, []).append((ms, t.trade_id, t.price, t.size))
    out: list[Row] = []
    if not buckets:
        return out
    previous = None
    k = min(buckets)
    with localcontext(prec=80):
        while (k + 1) * span <= end_ms:
            group = sorted(buckets.get(k, []))
            if group:
                prices = [g[2] for g in group]
                volume = sum(g[3] for g in group)
                quote = sum(g[2] * g[3] for g in group)
                previous = prices[-1]
                vwap = VWAP.divide(quote, volume)
                out.append(
                    (tf.name, (k + 1) * span, prices[0], max(prices), min(prices), prices[-1], volume, quote,
                     len(group), vwap, group[0][1], group[-1][1])
                )  # fmt: skip
            elif flat:
                out.append(
                    (
                        tf.name,
                        (k + 1) * span,
                        previous,
                        previous,
                        previous,
                        previous,
                        0,
                        0,
                        0,
                        None,
                        None,
                        None,
                    )
                )
            k += 1
    return out


def by_tf(candles: tuple[Candle, ...] | list[Candle], tf: Timeframe) -> list[Row]:
    return [row(c) for c in candles if c.timeframe == tf.name]


ALL = (TF_1M, TF_5M, TF_15M, TF_1H, TF_4H, TF_1D)


@cache
def xrp_replay() -> Emitted:
    trades = tape_trades(XRP)
    return run(SeriesWindows("okx", "XRP-ETH", GRACE), trades, trades[-1].ts_event)


# ---------------------------------------------------------------- generated streams

rows = st.lists(
    st.tuples(
        st.one_of(
            st.integers(0, 8 * MIN),
            st.sampled_from(
                [0, 1, MIN - 1, MIN, MIN + 2_000, 2 * MIN, 2 * MIN + 2_000, 5 * MIN - 1, 5 * MIN]
            ),
        ),
        st.sampled_from(["99.5", "100", "100.25", "101", "98.75"]),
    ),
    min_size=1,
    max_size=50,
)


def make_trades(data: list[tuple[int, str]], rnd: random.Random) -> list[Trade]:
    """Trades sorted by time, with unique ids not in time order (ties on ts_event break by id)."""
    ids = rnd.sample(range(1, 100_000), len(data))
    return sorted(
        (trade(ms, p, tid) for (ms, p), tid in zip(data, ids, strict=True)), key=lambda t: t.ts_event
    )


def shuffle_within(trades: list[Trade], grace: timedelta, rnd: random.Random) -> list[Trade]:
    """Arrival order: each trade delayed by a random amount under the grace, so none arrives late."""
    g = int(grace / timedelta(milliseconds=1))
    keyed = [(ms_from_utc(t.ts_event) + rnd.randrange(g), i, t) for i, t in enumerate(trades)]
    return [t for _, _, t in sorted(keyed, key=lambda x: (x[0], x[1]))]
