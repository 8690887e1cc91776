"""Helpers for running the real dataflow in tests and reading oracles independently of the code."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bytewax.testing import TestingSink, cluster_main, run_main

from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from flows.graph import FlowSinks
from flows.replay import replay_flow
from market.types import Candle, IndicatorValue, Signal
from market.windowing import LateTrade
from tests.conftest import TEST_DATA

TAPES = TEST_DATA / "tapes"
XRP_TAPE = TAPES / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
BTC_TAPE = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
MATIC_TAPE = TAPES / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"


def ms(value: str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


@dataclass
class Captured:
    candles: list[Candle] = field(default_factory=list)
    late: list[LateTrade] = field(default_factory=list)
    indicators: list[IndicatorValue | Signal] = field(default_factory=list)

    def of(self, timeframe: str, symbol: str | None = None) -> list[Candle]:
        return [
            c for c in self.candles if c.timeframe == timeframe and (symbol is None or c.symbol == symbol)
        ]


def run_replay(
    tapes: list[Path],
    *,
    workers: int = 1,
    database: Any = None,
    indicators: IndicatorsConfig | None = None,
    **settings: Any,
) -> Captured:
    """Run the replay dataflow in-process over ``tapes``, capturing candles, late trades, indicators."""
    captured = Captured()
    sinks = FlowSinks(
        database=database,
        candles=[TestingSink(captured.candles)],
        late=[TestingSink(captured.late)],
        indicators=[TestingSink(captured.indicators)],
    )
    flow = replay_flow(Settings(replay_tapes=tapes, **settings), sinks, indicators)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return captured


def ohlcv(candle: Candle) -> tuple[Decimal, ...]:
    return (candle.open, candle.high, candle.low, candle.close, candle.volume)


MINUTE = timedelta(minutes=1)
