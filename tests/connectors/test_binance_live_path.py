"""The live Binance path end to end: the real XRP/ETH aggregate trades of the bundled tape
(tests/data/SOURCES.md) served by the Binance simulator, read over its websocket (``@aggTrade``) and
REST (``aggTrades`` by ``fromId``) by the live source and built into candles by the flow's candle step,
give exactly Binance's own 1m and 5m klines (tests/data/tapes); a hole is backfilled by id, poison is
refused while the source keeps running, and a connection renewed before the exchange's age limit
loses no trade."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from bytewax.testing import TestingSink, run_main

from connectors.exchange import exchange
from connectors.trades_source import TradesSource, Venue
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.sequencing import Gap
from market.types import Candle, FeedState, Rejected, Trade, TradeBatch, ms_from_utc
from tests.connectors.binance_kit import KLINES, XRP, binance_simulator, wait_played
from tests.support.tapes import tape_rows

X = TypeVar("X")
FAR = timedelta(days=3650)  # the tape is from 2019: its times are checked against no receive clock


@dataclass
class Run:
    candles: list[Candle] = field(default_factory=list)
    stored: list[Any] = field(default_factory=list)

    def trades(self) -> list[Trade]:
        return [t for batch in self.stored if isinstance(batch, TradeBatch) for t in batch.trades]

    def of(self, kind: type[X]) -> list[X]:
        return [item for item in self.stored if isinstance(item, kind)]

    def klines(self, timeframe: str) -> list[tuple[Any, ...]]:
        return [
            (ms_from_utc(c.close_time), c.open, c.high, c.low, c.close, c.volume)
            for c in self.candles
            if c.timeframe == timeframe
        ]


def run_binance(
    ready: dict[str, Any], start_after: int, end_id: int, renew_after: timedelta | None = None, **options: Any
) -> Run:
    """The live source of one Binance instrument through the flow (event clock: the tape is old)."""
    venue = Venue(
        exchange("binance"),
        ready["ws"],
        ready["rest"],
        ("XRP-ETH",),
        {"XRP-ETH": start_after},
        {"XRP-ETH": end_id},
        renew_after,
    )
    source = TradesSource([venue], max_behind=FAR, future_tolerance=FAR, rest_min_interval=0, **options)
    run = Run()
    sinks = FlowSinks(database=TestingSink(run.stored), candles=[TestingSink(run.candles)])
    run_main(build_flow("binance_live", source, CandleConfig(exchange="binance", clock="event"), sinks))
    return run


def binance_klines(timeframe: str) -> list[tuple[Any, ...]]:
    """Binance's own klines but the last, still forming when the tape ends (TIME.md rule 9)."""
    fields = ("open", "high", "low", "close", "volume")
    rows = [(int(k["close_time"]), *(Decimal(k[f]) for f in fields)) for k in tape_rows(KLINES[timeframe])]
    return rows[:-1]


TAPE_IDS = [int(r["trade_id"]) for r in tape_rows(XRP)]


@pytest.mark.parametrize("timeframe", ["1m", "5m"])
def test_candles_from_the_live_binance_path_equal_binance_klines(tmp_path: Path, timeframe: str) -> None:
    args = ("--tape", str(XRP), "--speed", "0", "--wait-for-subscriber")
    with binance_simulator(tmp_path / "sim.log", *args) as ready:
        run = run_binance(ready, TAPE_IDS[0] - 1, TAPE_IDS[-1])
    assert run.klines(timeframe) == binance_klines(timeframe)
    assert len(run.klines(timeframe)) == {"1m": 3559, "5m": 711}[timeframe]
    assert {(c.exchange, c.symbol) for c in run.candles} == {("binance", "XRP-ETH")}
    assert [t.trade_id for t in run.trades()] == TAPE_IDS


def test_holes_are_backfilled_by_id_and_poison_is_refused_while_the_flow_runs(tmp_path: Path) -> None:
    """The simulator never pushes every 50th trade (REST has it) and sends an unreadable event after
    every 97th: every trade comes out once, in order, the missing ones from REST after a filled gap,
    each poison event is one reject, and the candles are still Binance's."""
    args = (
        "--tape",
        str(XRP),
        "--speed",
        "0",
        "--wait-for-subscriber",
        "--drop-every",
        "50",
        "--poison-every",
        "97",
    )
    with binance_simulator(tmp_path / "sim.log", *args) as ready:
        run = run_binance(ready, TAPE_IDS[0] - 1, TAPE_IDS[-1])
    trades = run.trades()
    assert [t.trade_id for t in trades] == TAPE_IDS
    dropped = {TAPE_IDS[k - 1] for k in range(50, len(TAPE_IDS) + 1, 50)}
    assert {t.trade_id for t in trades if t.origin == "rest"} >= dropped - {TAPE_IDS[-1]}
    gaps = [g for g in run.of(Gap) if g.reason == "sequence"]
    assert gaps and all(g.filled and g.exchange == "binance" for g in gaps)
    assert {g.to_trade_id - 1 for g in gaps} <= dropped
    rejects = run.of(Rejected)
    poisoned = sum(1 for k in range(97, len(TAPE_IDS) + 1, 97) if k % 50)
    assert len(rejects) == poisoned and {r.source for r in rejects} == {"binance-ws"}
    assert all(b"poison" in r.raw for r in rejects)
    assert run.klines("1m") == binance_klines("1m")


def test_a_resumed_instrument_is_backfilled_from_its_stored_end(tmp_path: Path) -> None:
    """Started after a stored trade (what the live flow reads from the database), the trades after it
    come from REST by ``fromId`` behind a filled ``resume`` gap, each once."""
    middle = TAPE_IDS[len(TAPE_IDS) // 2]
    with binance_simulator(tmp_path / "sim.log", "--tape", str(XRP), "--speed", "0") as ready:
        wait_played(ready, "XRPETH", TAPE_IDS[-1])  # the market moved on while the collector was away
        run = run_binance(ready, middle, TAPE_IDS[-1])
    assert [t.trade_id for t in run.trades()] == [i for i in TAPE_IDS if i > middle]
    (gap,) = run.of(Gap)
    assert (gap.reason, gap.from_trade_id, gap.to_trade_id, gap.filled) == (
        "resume",
        middle,
        TAPE_IDS[-1] + 1,
        True,
    )
    assert {t.origin for t in run.trades()} == {"rest"}


@pytest.mark.parametrize("renew", [True, False], ids=["renewed-by-the-collector", "cut-by-the-server"])
def test_the_connection_age_limit_loses_no_trade(tmp_path: Path, renew: bool) -> None:
    """Binance ends a connection at its age limit (here 2 s; 24 h in production): the collector renews
    it before (its ``renew_after``, here 1 s; 23 h in production) or reconnects after the server's cut,
    and backfills the switch-over by id: every trade comes out once and the candles are Binance's."""
    args = ("--tape", str(XRP), "--speed", "40000", "--wait-for-subscriber", "--max-age", "2")
    with binance_simulator(tmp_path / "sim.log", *args) as ready:
        run = run_binance(
            ready,
            TAPE_IDS[0] - 1,
            TAPE_IDS[-1],
            timedelta(seconds=1) if renew else None,
            reconnect_initial=0.05,
        )
    assert [t.trade_id for t in run.trades()] == TAPE_IDS
    assert [g for g in run.of(Gap) if g.reason == "reconnect"], "no connection was replaced"
    assert run.klines("5m") == binance_klines("5m")


def test_pings_both_ways_keep_the_connection_open(tmp_path: Path) -> None:
    """The server pings every 0.2 s and closes a connection that has not answered within 1 s; the
    collector answers each, and probes a silent socket with ping frames of its own (0.1 s of silence
    here), whose pongs it counts: one connection from the first trade to the hundredth."""
    args = (
        "--tape",
        str(XRP),
        "--speed",
        "300",
        "--wait-for-subscriber",
        "--ping-interval",
        "0.2",
        "--pong-timeout",
        "1",
    )
    with binance_simulator(tmp_path / "sim.log", *args) as ready:
        venue = Venue(
            exchange("binance"),
            ready["ws"],
            ready["rest"],
            ("XRP-ETH",),
            {"XRP-ETH": TAPE_IDS[0] - 1},
            {"XRP-ETH": TAPE_IDS[99]},
        )
        source = TradesSource(
            [venue], ping_interval=0.1, pong_timeout=1, max_behind=FAR, future_tolerance=FAR
        )
        (key,) = source.list_parts()
        assert key == "binance:XRP-ETH"
        part = source.build_part("source", key, None)
        items: list[Any] = []
        try:
            while True:
                items.extend(part.next_batch())
                time.sleep(0.01)
        except StopIteration:
            pass
        finally:
            part.close()
    health = part.health()
    assert [t.trade_id for t in items if isinstance(t, Trade)] == TAPE_IDS[:100]
    assert health.reconnects == 0 and health.pings_sent > 0 and health.pongs_received > 0
    assert (health.exchange, health.connection) == ("binance", "XRP-ETH")


def test_an_instrument_binance_does_not_know_is_refused_and_the_others_run(tmp_path: Path) -> None:
    """Binance subscribes a stream of any name and never sends on it; REST answers -1121 Invalid
    symbol: the instrument is refused (its feed says so), the known one comes out whole."""
    args = ("--tape", str(XRP), "--speed", "0", "--wait-for-subscriber")
    with binance_simulator(tmp_path / "sim.log", *args) as ready:
        instruments = ("NOPE-USDT", "XRP-ETH")
        start, end = {"XRP-ETH": TAPE_IDS[0] - 1}, {"XRP-ETH": TAPE_IDS[-1]}
        venue = Venue(exchange("binance"), ready["ws"], ready["rest"], instruments, start, end)
        source = TradesSource([venue], max_behind=FAR, future_tolerance=FAR, rest_min_interval=0)
        part = source.build_part("source", source.list_parts()[0], None)
        items: list[Any] = []
        deadline = time.monotonic() + 60
        while not any(isinstance(i, Trade) and i.trade_id == TAPE_IDS[-1] for i in items):
            assert time.monotonic() < deadline, "the known instrument did not come out whole"
            items.extend(part.next_batch())
            time.sleep(0.01)
        part.close()
    assert [t.trade_id for t in items if isinstance(t, Trade)] == TAPE_IDS
    nope = [s for s in items if isinstance(s, FeedState) and s.symbol == "NOPE-USDT"]
    assert nope[-1].reason.startswith("refused: BinanceRestError") and "-1121" in nope[-1].reason
