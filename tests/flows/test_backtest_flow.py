"""The backtest flow (flows/backtest.py) against the replay flow over the same tapes: the same signals
for the same candles, over trades or over the candles themselves, with one worker or two; the accounts
against an independent loop (tests/flows/backtest_oracle.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.testing import cluster_main

from configs.indicators import parse_indicator_config
from connectors.memory import BatchSource, CallbackSink, in_batches
from connectors.replay import TapeSource
from flows.backtest import BacktestBatch, RunResult, Timings, backtest_flow, graph_outputs, run_backtest
from flows.candles import CandleConfig
from market.backtest import AccountSettings
from market.types import Candle, Signal
from tests.flows.backtest_oracle import EXACT, NUMBERS, exact_parts, number_parts, replay_account
from tests.flows.flowkit import BTC_TAPE, XRP_TAPE, Captured, run_replay

CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": ["1m", "5m"],
                "indicators": [{"indicator": "EMA", "label": "ema_fast", "params": {"timeperiod": 9}}],
                "strategies": [
                    {"strategy": "ema_crossover", "params": {"fast": 5, "slow": 13}},
                    {
                        "strategy": "rsi_reversion",
                        "params": {"timeperiod": 7, "oversold": 35, "overbought": 65},
                    },
                ],
            }
        ]
    }
)
ACCOUNT = AccountSettings(cash=5_000.0, fee=0.002, slippage=0.0005)


@pytest.fixture(scope="module")
def replayed() -> Captured:
    return run_replay([XRP_TAPE], indicators=CONFIG)


def tape_runs(paths: list[Path], timeframe: str, keep_candles: bool = False) -> list[RunResult]:
    source = TapeSource(paths)
    config = CandleConfig(clock="event", ends=source.ends)
    return run_backtest(
        source, CONFIG, ACCOUNT, trades=config, timeframe=timeframe, keep_candles=keep_candles
    )


def signals_of(outputs: list, strategy: str, timeframe: str) -> list[Signal]:
    return [o for o in outputs if type(o) is Signal and o.strategy == strategy and o.timeframe == timeframe]


@pytest.mark.parametrize("timeframe", ["1m", "5m"])
def test_over_trades_the_signals_are_the_replays(replayed: Captured, timeframe: str) -> None:
    runs = tape_runs([XRP_TAPE], timeframe)
    assert [(r.symbol, r.timeframe, r.strategy) for r in runs] == [
        ("XRP-ETH", timeframe, "ema_crossover"),
        ("XRP-ETH", timeframe, "rsi_reversion"),
    ]
    for run in runs:
        expected = signals_of(replayed.indicators, run.strategy, timeframe)
        assert expected, "the strategy signals on this tape"
        assert run.signals == expected
        assert len(run.equity) == len(replayed.of(timeframe))


def test_over_candles_the_runs_are_those_over_trades(replayed: Captured) -> None:
    candles = replayed.of("1m")
    over_candles = run_backtest(BatchSource(in_batches(candles, size=500)), CONFIG, ACCOUNT)
    over_trades = tape_runs([XRP_TAPE], "1m")
    for a, b in zip(over_candles, over_trades, strict=True):
        assert (a.strategy, a.signals, a.closed, a.open_trade) == (
            b.strategy,
            b.signals,
            b.closed,
            b.open_trade,
        )
        assert list(a.equity) == list(b.equity)
        assert (a.first_candle, a.last_candle) == (candles[0], candles[-1])


def test_graph_outputs_are_the_replays_indicator_outputs(replayed: Captured) -> None:
    expected = [o for o in replayed.indicators if o.timeframe == "1m"]
    assert graph_outputs(replayed.of("1m"), CONFIG) == expected


def test_the_accounts_match_an_independent_loop() -> None:
    for run in tape_runs([XRP_TAPE], "1m", keep_candles=True):
        oracle = replay_account(
            [(c.open_time, c.close_time, float(c.open), float(c.close)) for c in run.candles],
            [(s.time, s.action) for s in run.signals],
            cash=ACCOUNT.cash,
            fee=ACCOUNT.fee,
            slippage=ACCOUNT.slippage,
        )
        assert len(oracle.trades) > 3, "the run trades"
        assert [p.time for p in run.equity] == [row[0] for row in oracle.equity]
        got_equity = [v for p in run.equity for v in (p.close, p.cash, p.position, p.equity)]
        assert got_equity == pytest.approx([v for row in oracle.equity for v in row[1:]], rel=1e-12, abs=1e-9)
        got = [
            {k: getattr(t, k) for k in (*EXACT, *NUMBERS) if k != "open"} | {"open": t.open}
            for t in run.trades
        ]
        assert exact_parts(got) == exact_parts(oracle.trades)
        assert number_parts(got) == pytest.approx(number_parts(oracle.trades), rel=1e-12, abs=1e-9)
        # TIME.md rule 7: each fill is at the open of a candle opening at or after its signal
        assert all(f.time >= f.signal_time and f.time.second == 0 for f in run.fills)


def test_start_drops_earlier_candles_before_the_indicators() -> None:
    runs = tape_runs([XRP_TAPE], "1m")
    first = runs[0].first_candle
    assert first is not None
    start = first.open_time + timedelta(hours=6)
    source = TapeSource([XRP_TAPE])
    later = run_backtest(
        source,
        CONFIG,
        ACCOUNT,
        trades=CandleConfig(clock="event", ends=source.ends),
        timeframe="1m",
        start=start,
    )
    assert later[0].first_candle is not None and later[0].first_candle.open_time == start
    assert len(later[0].equity) == len(runs[0].equity) - 360


def test_two_workers_give_the_runs_of_one() -> None:
    """Two series (XRP-ETH, BTC-USDT) on two workers: each series' batches arrive in order."""
    one = {(r.symbol, r.strategy): r for r in tape_runs([XRP_TAPE, BTC_TAPE], "1m")}
    batches: list[BacktestBatch] = []
    source = TapeSource([XRP_TAPE, BTC_TAPE])
    flow = backtest_flow(
        source,
        CallbackSink(batches.extend),
        CONFIG,
        ACCOUNT,
        Timings(),
        CandleConfig(clock="event", ends=source.ends),
        "1m",
    )
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    for (symbol, strategy), run in one.items():
        series = f"okx|{symbol}|1m"
        mine = [b for b in batches if b.series == series]
        equity = [p for b in mine if strategy in b.accounts for p in b.accounts[strategy].equity]
        signals = [s for b in mine for s in b.signals if s.strategy == strategy]
        assert (equity, signals) == (list(run.equity), run.signals)
        candles: list[Candle] = [c for b in mine for c in b.candles]
        assert [c.close_time for c in candles] == sorted(c.close_time for c in candles)
