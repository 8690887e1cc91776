"""The graph's output order: a final candle is written before the indicators on it are computed, so its
row never waits for them (flows/graph.py builds the candle step's outputs before the indicator step)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from configs.indicators import parse_indicator_config
from connectors.spool import StoredItem
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.types import Candle, Trade

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CONFIG = parse_indicator_config(
    {"profiles": [{"instruments": "*", "timeframes": ["1m"], "indicators": [{"indicator": "SMA"}]}]}
)


class _Recorder(DynamicSink[StoredItem]):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RecorderPartition:
        return _RecorderPartition(self.events)


class _RecorderPartition(StatelessSinkPartition[StoredItem]):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def write_batch(self, items: list[StoredItem]) -> None:
        self.events += [f"row {item.close_time:%H:%M}" for item in items if type(item) is Candle]


def test_a_candle_is_written_before_the_indicator_step_reads_its_series_history() -> None:
    """Four minutes of trades in one batch: the first candle's row is written before the indicator step
    even asks for the series' stored history (a database read when the live flow restarts)."""
    trades = [
        Trade("okx", "BTC-USDT", i + 1, Decimal(100 + i), Decimal(1), "buy", T0 + i * timedelta(seconds=50))
        for i in range(5)
    ]
    events: list[str] = []

    def history(candle: Candle) -> list[Candle]:
        events.append(f"history {candle.close_time:%H:%M}")
        return []

    config = CandleConfig(grace=timedelta(seconds=2), clock="event")
    source = TestingSource(trades, batch_size=len(trades))
    run_main(build_flow("order", source, config, FlowSinks(database=_Recorder(events)), CONFIG, history))
    assert events.index("row 12:01") < events.index("history 12:01")
    assert [e for e in events if e.startswith("row")] == ["row 12:01", "row 12:02", "row 12:03"]
