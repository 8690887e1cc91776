"""CandleBuilder, RollupBuilder and rollup against independent oracles (docs/time.md rules 1, 2, 5, 6).

Oracles: OKX's own MATIC-USDT-SWAP candle, the exchange's XRP-ETH 1m/5m klines (tests/data/SOURCES.md),
``fractions.Fraction`` arithmetic and a direct sort-and-scan computation written here.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal, Inexact
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.candles import CandleBuilder, RollupBuilder, flat_candle, rollup
from market.timeframes import TF_1H, TF_1M, TF_5M, TF_15M, Timeframe
from market.types import Candle, Trade, ms_from_utc, utc_from_ms
from tests.support.tapes import tape_rows, tape_trades

TAPES = Path(__file__).resolve().parents[1] / "data" / "tapes"
MATIC = TAPES / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"
MATIC_CANDLE = TAPES / "MATIC-USDT-SWAP-candle-1m-2023-08-20T1601Z.csv"
XRP_1M = TAPES / "XRP-ETH-exchange-candles-1m.csv"
XRP_5M = TAPES / "XRP-ETH-exchange-candles-5m.csv"
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def trade(ms: int, price: str, size: str = "1", tid: int = 1, count: int = 1) -> Trade:
    return Trade(
        "okx",
        "BTC-USDT",
        tid,
        Decimal(price),
        Decimal(size),
        "buy",
        T0 + timedelta(milliseconds=ms),
        count=count,
    )


def oracle(trades: list[Trade]) -> tuple[object, ...]:
    """OHLCV, counts and ids computed directly: sort by (ts_event, trade_id), scan."""
    ordered = sorted(trades, key=lambda t: (ms_from_utc(t.ts_event), t.trade_id))
    prices = [t.price for t in ordered]
    volume = sum((Fraction(t.size) for t in ordered), Fraction(0))
    quote = sum((Fraction(t.price) * Fraction(t.size) for t in ordered), Fraction(0))
    return (
        prices[0], max(prices), min(prices), prices[-1], volume, quote,
        sum(t.count for t in ordered), ordered[0].trade_id, ordered[-1].trade_id,
    )  # fmt: skip


def as_tuple(c: Candle) -> tuple[object, ...]:
    return (
        c.open, c.high, c.low, c.close, Fraction(c.volume), Fraction(c.quote_volume),
        c.trade_count, c.first_trade_id, c.last_trade_id,
    )  # fmt: skip


def test_matic_swap_minute_equals_okx_candle() -> None:
    """Contracts: volume = OKX vol (contracts), quote volume = OKX volCcyQuote (sum px*sz*ctVal)."""
    okx = tape_rows(MATIC_CANDLE)[0]
    trades = tape_trades(MATIC)
    builder = CandleBuilder("okx", "MATIC-USDT-SWAP", TF_1M, contract_value=Decimal(okx["ct_val"]))
    for t in reversed(trades):  # arrival order does not matter (rule 1)
        builder.update(t)
    open_time = utc_from_ms(int(okx["open_time_ms"]))
    candle = builder.build(open_time)
    assert candle.time == candle.close_time == open_time + timedelta(minutes=1)  # rule 2
    assert (candle.open, candle.high, candle.low, candle.close) == tuple(
        Decimal(okx[k]) for k in ("open", "high", "low", "close")
    )
    assert candle.volume == Decimal(okx["vol_contracts"])
    assert candle.quote_volume == Decimal(okx["vol_ccy_quote"])
    assert candle.vwap is not None
    assert abs(candle.vwap - Decimal(okx["vol_ccy_quote"]) / Decimal(okx["vol_ccy_base"])) < Decimal("1e-20")
    assert candle.trade_count == 14
    assert (candle.first_trade_id, candle.last_trade_id) == (104136693, 104136706)


def test_trade_at_boundary_belongs_to_next_candle() -> None:
    """Rule 1: a trade at exactly 12:01:00.000 is in [12:01, 12:02), not [12:00, 12:01)."""
    builder = CandleBuilder("okx", "BTC-USDT")
    builder.update(trade(60_000, "100"))
    with pytest.raises(ValueError):
        builder.build(T0)
    candle = builder.build(T0 + timedelta(minutes=1))
    assert (candle.open_time, candle.close_time) == (T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    builder.reset()
    builder.update(trade(59_999, "100"))
    assert builder.build(T0).close_time == T0 + timedelta(minutes=1)


def test_build_rejects_unaligned_open() -> None:
    builder = CandleBuilder("okx", "BTC-USDT")
    builder.update(trade(1_000, "100"))
    with pytest.raises(ValueError):
        builder.build(T0 + timedelta(seconds=1))


trade_lists = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 59_999), st.sampled_from([0, 1, 30_000, 59_999])),
        st.sampled_from(["99.5", "100", "100.25", "101", "98.75"]),
        st.sampled_from(["0.001", "1", "2.5", "0.12345678"]),
        st.integers(1, 3),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(trade_lists, st.randoms(use_true_random=False))
def test_builder_equals_direct_computation_in_any_order(
    rows: list[tuple[int, str, str, int]], rnd: random.Random
) -> None:
    """Rule 1: open/close by (ts_event, trade_id) whatever the order; exact sums; count sums Trade.count."""
    ids = rnd.sample(range(1, 10_000), len(rows))  # ids not in time order: ties on ts_event break by id
    trades = [trade(ms, p, s, tid, n) for (ms, p, s, n), tid in zip(rows, ids, strict=True)]
    expected = oracle(trades)
    for _ in range(3):
        rnd.shuffle(trades)
        builder = CandleBuilder("okx", "BTC-USDT")
        for t in trades:
            builder.update(t)
        candle = builder.build(T0)
        assert as_tuple(candle) == expected
        assert candle.low <= min(candle.open, candle.close) <= max(candle.open, candle.close) <= candle.high
        assert candle.vwap is not None and candle.low <= candle.vwap <= candle.high


def test_sums_are_exact_or_raise() -> None:
    builder = CandleBuilder("okx", "BTC-USDT")
    n = 0
    for i in range(1, 2001):
        builder.update(trade(i, f"6{i:04d}.12345678", f"0.{i:08d}", tid=i))
        n += 1
    candle = builder.build(T0)
    expected = sum(Fraction(f"6{i:04d}.12345678") * Fraction(f"0.{i:08d}") for i in range(1, 2001))
    assert Fraction(candle.quote_volume) == expected
    assert candle.trade_count == n
    builder.reset()
    with pytest.raises(Inexact):  # the product needs 102 digits: refused rather than rounded
        builder.update(trade(1, "1." + "3" * 50, "1." + "7" * 50))


def test_empty_builder_builds_flat_candle_or_refuses() -> None:
    """Rule 5: an empty interval is flat at the previous close; with nothing to carry, nothing to build."""
    builder = CandleBuilder("okx", "BTC-USDT", TF_5M)
    flat = builder.build(T0, previous_close=Decimal("42.5"))
    assert (flat.open, flat.high, flat.low, flat.close) == (Decimal("42.5"),) * 4
    assert (flat.volume, flat.quote_volume, flat.trade_count, flat.vwap) == (0, 0, 0, None)
    assert flat.is_flat and flat.close_time == T0 + timedelta(minutes=5) and flat.timeframe == "5m"
    with pytest.raises(ValueError):
        builder.build(T0)


def exchange_1m_candles() -> list[Candle]:
    """The exchange's XRP-ETH 1m klines as Candles (a kline with volume 0 is a flat minute)."""
    out = []
    for k in tape_rows(XRP_1M):
        open_time = utc_from_ms(int(k["open_time"]))
        o, h, low, c, v = (Decimal(k[f]) for f in ("open", "high", "low", "close", "volume"))
        traded = v != 0
        out.append(
            Candle("binance", "XRP-ETH", "1m", open_time, open_time + timedelta(minutes=1), o, h, low, c, v,
                   v * c, 1 if traded else 0, c if traded else None, None, None)
        )  # fmt: skip
    return out


def test_rollup_of_exchange_1m_klines_reproduces_exchange_5m() -> None:
    """Rule 6 on real data: flat minutes contribute no prices; a naive rollup gets opens wrong."""
    minutes = exchange_1m_candles()
    by_5m: dict[datetime, list[Candle]] = {}
    for c in minutes:
        by_5m.setdefault(TF_5M.open_of(c.open_time), []).append(c)
    klines_5m = tape_rows(XRP_5M)
    previous_close: Decimal | None = None
    naive_wrong_opens = 0
    for k in klines_5m:
        group = by_5m[utc_from_ms(int(k["open_time"]))]
        got = rollup(group, TF_5M, previous_close)
        expected = tuple(Decimal(k[f]) for f in ("open", "high", "low", "close", "volume"))
        assert (got.open, got.high, got.low, got.close, got.volume) == expected, k
        assert got.close_time == utc_from_ms(int(k["open_time"])) + timedelta(minutes=5)
        naive_wrong_opens += group[0].open != expected[0]
        previous_close = got.close
    assert len(klines_5m) == 712
    assert naive_wrong_opens == 183  # the count docs/time.md rule 6 quotes


def test_rollup_all_flat_is_flat_at_previous_close() -> None:
    flats = [flat_candle("okx", "BTC-USDT", TF_1M, T0 + timedelta(minutes=i), Decimal("7")) for i in range(5)]
    got = rollup(flats, TF_5M, previous_close=Decimal("7"))
    assert got == flat_candle("okx", "BTC-USDT", TF_5M, T0, Decimal("7"))
    with pytest.raises(ValueError):
        rollup(flats, TF_5M)


def test_rollup_rejects_disorder_and_foreign_candles() -> None:
    a = flat_candle("okx", "BTC-USDT", TF_1M, T0, Decimal(1))
    b = flat_candle("okx", "BTC-USDT", TF_1M, T0 + timedelta(minutes=1), Decimal(1))
    with pytest.raises(ValueError):
        rollup([b, a], TF_5M, Decimal(1))
    with pytest.raises(ValueError):  # 12:05 is outside [12:00, 12:05)
        rollup(
            [a, flat_candle("okx", "BTC-USDT", TF_1M, T0 + timedelta(minutes=5), Decimal(1))],
            TF_5M,
            Decimal(1),
        )
    with pytest.raises(ValueError):
        rollup(
            [a, flat_candle("okx", "ETH-USDT", TF_1M, T0 + timedelta(minutes=1), Decimal(1))],
            TF_5M,
            Decimal(1),
        )
    with pytest.raises(ValueError):
        RollupBuilder("okx", "BTC-USDT", TF_5M).update(flat_candle("okx", "BTC-USDT", TF_15M, T0, Decimal(1)))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3_600_000 - 1),
            st.sampled_from(["99.5", "100", "100.25", "101", "98.75"]),
            st.sampled_from(["0.001", "1", "2.5"]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([TF_5M, TF_15M, TF_1H]),
)
def test_rollup_equals_candle_built_from_the_trades(rows: list[tuple[int, str, str]], tf: Timeframe) -> None:
    """Rule 6: rolling 1m candles (flat minutes included) up gives the candle of the trades directly."""
    trades = [trade(ms, p, s, tid=i) for i, (ms, p, s) in enumerate(rows)]
    by_window: dict[datetime, list[Trade]] = {}
    for t in trades:
        by_window.setdefault(tf.open_of(t.ts_event), []).append(t)
    previous_close = Decimal("50")
    for open_time, group in sorted(by_window.items()):
        minutes = []
        for i in range(tf.seconds // 60):
            start = open_time + timedelta(minutes=i)
            builder = CandleBuilder("okx", "BTC-USDT")
            for t in group:
                if start <= t.ts_event < start + timedelta(minutes=1):
                    builder.update(t)
            minutes.append(builder.build(start, previous_close))
            previous_close = minutes[-1].close
        got = rollup(minutes, tf, Decimal("50"))
        expected = oracle(group)
        assert as_tuple(got) == expected
        assert (got.open_time, got.close_time, got.timeframe) == (open_time, open_time + tf.length, tf.name)
        exact_vwap = expected[5] / expected[4]  # type: ignore[operator]
        assert got.vwap is not None
        assert abs(Fraction(got.vwap) - exact_vwap) <= exact_vwap / 10**27  # 28 significant digits
