"""The honesty checks over the backtest graph: the look-ahead check catches a strategy that reads the next
candle of its input and passes every shipped template; the warm-up check measures what the indicators'
definitions say it must."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import ClassVar

import pytest

from app.backtest import main
from app.backtest_checks import check_lookahead, check_warmup, run_check
from configs.indicators import IndicatorsConfig, parse_indicator_config
from flows.backtest import graph_outputs
from market.indicators import Bar
from market.strategies import STRATEGIES
from market.strategies.base import Strategy
from market.strategies.registry import StrategySpec
from market.strategies.templates import Decision
from market.types import Candle, IndicatorValue, Signal
from tests.flows.flowkit import XRP_TAPE
from tests.support.tapes import kline_candles

TAPE = Path(__file__).resolve().parents[1] / "data" / "tapes" / "XRP-ETH-exchange-candles-1m.csv"


@cache
def candles() -> tuple[Candle, ...]:
    return kline_candles(TAPE, "XRP-ETH", "1m")[:300]


def graph_run(candles: Sequence[Candle], config: IndicatorsConfig) -> list[IndicatorValue | Signal]:
    """The backtest's graph (the live indicator path), as the command's checks run it."""
    return graph_outputs(candles, config)


class PeekingTestOnlyStrategy(Strategy):
    """Test only, dishonest on purpose: buys (sells) when the *next* candle of its input closes higher
    (lower), as an indicator computed over a whole array can. ``upcoming`` maps each input candle's open
    time to the next candle's close; ``peeking_run`` fills it from the candles being run."""

    name = "peeking_test_only"
    upcoming: ClassVar[dict[datetime, float]] = {}

    def decide(self, bar: Bar) -> Decision:
        following = self.upcoming.get(bar.open_time)
        if following is None:
            return None
        if following > bar.close and self.position != 1:
            return "buy", "the next close is higher", {"close": bar.close}
        if following < bar.close and self.position != -1:
            return "sell", "the next close is lower", {"close": bar.close}
        return None


def peeking_run(candles: Sequence[Candle], config: IndicatorsConfig) -> list[IndicatorValue | Signal]:
    PeekingTestOnlyStrategy.upcoming = {
        a.open_time: float(b.close) for a, b in zip(candles, candles[1:], strict=False)
    }
    return graph_run(candles, config)


@pytest.fixture
def peeking(monkeypatch: pytest.MonkeyPatch) -> Iterator[IndicatorsConfig]:
    spec = StrategySpec("peeking_test_only", PeekingTestOnlyStrategy, (), "test only: reads the next candle")
    monkeypatch.setitem(STRATEGIES, spec.name, spec)
    yield config_of([], [{"strategy": spec.name}])


def config_of(indicators: list[dict[str, object]], strategies: list[dict[str, object]]) -> IndicatorsConfig:
    profile = {"instruments": "*", "timeframes": ["1m"], "indicators": indicators, "strategies": strategies}
    return parse_indicator_config({"profiles": [profile]})


def test_the_lookahead_check_catches_a_strategy_reading_the_next_candle(peeking: IndicatorsConfig) -> None:
    report = check_lookahead(candles(), peeking, run=peeking_run, cuts=8)
    assert not report.ok
    first = report.cuts[0]
    # cut at the first signal: the truncated run has no next candle there, so no signal at the cut
    assert first.difference is not None and first.difference.time == first.cut
    assert first.difference.kind == "signal" and first.difference.other is None
    assert "FAILED" in report.lines()[-1]


def test_the_peeking_strategy_fails_the_command_with_the_difference(peeking: IndicatorsConfig) -> None:
    lines: list[str] = []
    assert run_check("lookahead", candles()[:80], peeking, lines.append, run=peeking_run) == 1
    assert any("signal 'peeking_test_only' at" in line and "other run nothing" in line for line in lines)


@pytest.mark.parametrize("name", sorted(set(STRATEGIES) - {"peeking_test_only"}))
def test_every_shipped_template_passes_the_lookahead_check(name: str) -> None:
    config = config_of(
        [{"indicator": "EMA", "params": {"timeperiod": 9}}, {"indicator": "RSI"}], [{"strategy": name}]
    )
    report = check_lookahead(candles(), config, run=graph_run, cuts=6)
    assert report.signals > 0, "the slice must give the template signals to cut at"
    assert report.ok, report.lines()
    assert len(report.cuts) == min(6, report.signals)


@pytest.mark.parametrize("period", [5, 10])
def test_the_warmup_of_an_sma_is_its_period_less_one(period: int) -> None:
    config = config_of([{"indicator": "SMA", "params": {"timeperiod": period}}], [])
    report = check_warmup(candles(), config, run=graph_run, offsets=[1, 7, 40])
    # a later start has no SMA until it has `period` candles, then the same window's mean
    assert [row.settled_after for row in report.rows] == [period - 1] * 3
    assert report.needed == period - 1
    assert all(row.final_difference is not None and row.final_difference < 1e-12 for row in report.rows)


def test_the_ema_crossover_needs_more_warmup_than_its_slow_period() -> None:
    config = config_of([], [{"strategy": "ema_crossover"}])
    report = check_warmup(candles(), config, run=graph_run, tolerance=1e-9)
    # the slow EMA remembers its seed: (20/22)^n of the seed's error stays, so agreement within 1e-9
    # (relative) takes well beyond the 21 candles of its seed, and is reached on these 300 candles
    assert report.needed is not None and 21 < report.needed < 300
    lines: list[str] = []
    assert run_check("warmup", candles(), config, lines.append, run=graph_run) == 0
    assert lines[-1] == f"warm-up needed: {report.needed} candles"


def test_the_command_runs_the_checks_over_a_tape(capsys: pytest.CaptureFixture[str]) -> None:
    tape = ["--tapes", str(XRP_TAPE), "--end", "2019-10-11T05:00:00Z"]
    assert main([*tape, "--strategy", "ema_crossover", "--check", "lookahead"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "okx XRP-ETH 1m:" in out
    assert any(line.startswith("look-ahead check: truncated at ") for line in out)
    assert out[-1] == "passed: every indicator value and signal at or before each cut is unchanged"
    assert main([*tape, "--strategy", "rsi_reversion", "--check", "warmup"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("warm-up needed: ") and out[-1].endswith(" candles")
    assert all(line.endswith("| no indicators") for line in out if line.strip()[:1].isdigit())
