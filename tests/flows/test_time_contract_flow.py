"""TIME.md rules 3, 4, 5 and 10 through the real dataflow: late trades are stored and counted but change
nothing, duplicates change nothing, and a quiet instrument's candle closes on wall-clock time."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.database import DatabaseSink
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.types import Candle, Rejected, Trade
from market.windowing import LateTrade
from sql.migrate import migrate

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def trade(trade_id: int, at: timedelta, price: str = "100", size: str = "1") -> Trade:
    return Trade("okx", "BTC-USDT", trade_id, Decimal(price), Decimal(size), "buy", T0 + at)


def run(
    items: list[Trade | Rejected], database: DatabaseSink | None = None
) -> tuple[list[Candle], list[LateTrade]]:
    candles: list[Candle] = []
    late: list[LateTrade] = []
    config = CandleConfig(grace=timedelta(seconds=2), clock="event")
    flow = build_flow(
        "t",
        TestingSource(items),
        config,
        FlowSinks(database=database, candles=[TestingSink(candles)], late=[TestingSink(late)]),
    )
    run_main(flow)
    return candles, late


def test_a_late_trade_is_stored_and_counted_but_changes_no_candle(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    on_time = [
        trade(1, timedelta(seconds=10), "100"),
        trade(2, timedelta(seconds=50), "101"),
        trade(3, timedelta(minutes=1, seconds=30), "102"),
    ]
    straggler = trade(4, timedelta(seconds=55), "150", "7")  # belongs to [12:00, 12:01), emitted already
    candles, late = run(
        [*on_time, straggler, trade(5, timedelta(minutes=2, seconds=5))],
        DatabaseSink(pg_url, tmp_path / "spool"),
    )
    first = next(c for c in candles if c.timeframe == "1m" and c.close_time == T0 + timedelta(minutes=1))
    assert (first.high, first.volume, first.trade_count) == (Decimal("101"), Decimal(2), 2)
    assert [x.trade.trade_id for x in late] == [4]
    assert late[0].candle_close == T0 + timedelta(minutes=1)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (5,)
        row = conn.execute("SELECT trade_id, candle_close, lateness FROM late_trades").fetchone()
        stored = conn.execute(
            "SELECT high, volume FROM candles_1m WHERE time = %s", (T0 + timedelta(minutes=1),)
        ).fetchone()
    # The watermark had reached 12:01:28 (newest 12:01:30 minus 2 s grace); the trade is from 12:00:55.
    assert row == (4, T0 + timedelta(minutes=1), timedelta(seconds=33))
    assert stored == (Decimal("101"), Decimal("2"))


def test_duplicates_change_nothing() -> None:
    trades = [trade(i, timedelta(seconds=7 * i), str(100 + i)) for i in range(1, 30)]
    once, _ = run(trades)
    overlapped = trades[:20] + trades[12:20] + trades[20:] + trades[25:]  # reconnect and backfill overlaps
    twice, late = run(overlapped)
    assert twice == once
    assert late == []


def test_rejects_are_stored_with_the_trades(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    bad = Rejected(b'{"arg":{"channel":"trades"},"data":[{"px":"-1"}]}', "negative price", T0)
    run([trade(1, timedelta(seconds=1)), bad], DatabaseSink(pg_url, tmp_path / "spool"))
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT reason, raw FROM rejects").fetchall() == [("negative price", bad.raw)]


class _QuietSource(DynamicSource[Trade]):
    """Emits its trades at once, then stays open (quiet) for ``quiet_for`` seconds of wall time."""

    def __init__(self, trades: list[Trade], quiet_for: float) -> None:
        self.trades = trades
        self.quiet_for = quiet_for

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _QuietPartition:
        return _QuietPartition(self.trades if worker_index == 0 else [], self.quiet_for)


class _QuietPartition(StatelessSourcePartition[Trade]):
    def __init__(self, trades: list[Trade], quiet_for: float) -> None:
        self.pending = list(trades)
        self.until = time.monotonic() + quiet_for

    def next_batch(self) -> Iterable[Trade]:
        if self.pending:
            out, self.pending = self.pending, []
            return out
        if time.monotonic() > self.until:
            raise StopIteration()
        time.sleep(0.05)
        return []


class _ArrivalSink(DynamicSink[Candle]):
    def __init__(self, arrivals: list[tuple[float, Candle]]) -> None:
        self.arrivals = arrivals

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ArrivalPartition:
        return _ArrivalPartition(self.arrivals)


class _ArrivalPartition(StatelessSinkPartition[Candle]):
    def __init__(self, arrivals: list[tuple[float, Candle]]) -> None:
        self.arrivals = arrivals

    def write_batch(self, items: list[Candle]) -> None:
        self.arrivals.extend((time.monotonic(), c) for c in items)


def test_a_quiet_instrument_closes_its_candle_on_wall_clock_time() -> None:
    """Rule 3 with the live clock: no later trade arrives, yet the candle is emitted about grace after
    its close, while the source is still open (at the end of input a live flow emits nothing)."""
    now = datetime.now(UTC)
    close = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    last = close - timedelta(milliseconds=300)  # the instrument's last trade, just before the close
    trades = [
        Trade("okx", "BTC-USDT", 1, Decimal(1), Decimal(1), "buy", last - timedelta(seconds=20)),
        Trade("okx", "BTC-USDT", 2, Decimal(2), Decimal(1), "sell", last),
    ]
    arrivals: list[tuple[float, Candle]] = []
    config = CandleConfig(grace=timedelta(milliseconds=500), clock="wall")
    started = time.monotonic()
    run_main(
        build_flow(
            "quiet", _QuietSource(trades, quiet_for=6.0), config, FlowSinks(candles=[_ArrivalSink(arrivals)])
        )
    )
    [(arrived, candle)] = [(t, c) for t, c in arrivals if c.timeframe == "1m"]
    assert candle.close_time == close and candle.close == Decimal(2) and candle.trade_count == 2
    # Emitted while the source was still open, i.e. by the advancing watermark, not by the end of input.
    assert arrived - started < 6.0
