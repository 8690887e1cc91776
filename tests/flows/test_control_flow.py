"""User indicator changes through the running graph (``flows.graph.build_flow`` with a control source),
on 1 and 2 workers: an added indicator reaches its series' indicator step and computes there what the
same indicator configured under another label computes (configured values equal TA-Lib,
tests/flows/test_indicator_flow.py); a series without it is left alone."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from configs.bots import parse_bot_config
from configs.indicators import parse_indicator_config
from connectors.control_store import ControlStore
from flows.candles import CandleConfig
from flows.control import ControlSource, _ControlPartition
from flows.graph import FlowSinks, build_flow
from market.bots import BotProgress
from market.control import ControlChange, IndicatorChange
from market.types import Candle, IndicatorValue
from sql.migrate import migrate
from tests.flows.test_bots_flow import _Gate, _Source, trades
from tests.flows.test_bots_step import CONFIG as CONFIG_BOT
from tests.flows.test_bots_step import backtest

CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "timeframes": ["1m", "5m"],
                "indicators": [{"indicator": "SMA", "label": "sma", "params": {"timeperiod": 5}}],
            }
        ]
    }
)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_added_user_indicator_runs_on_its_series_only(workers: int) -> None:
    market = sorted(trades("BTC-USDT", 30, 1) + trades("ETH-USDT", 30, 2), key=lambda t: t.ts_event)
    entry = {"indicator": "SMA", "label": "sma_user", "params": {"timeperiod": 5}}
    changes = [IndicatorChange(1, "add", "okx", "BTC-USDT", "1m", "sma_user", entry)]
    gate = _Gate()
    computed: list[Any] = []
    sinks = FlowSinks(indicators=[TestingSink(computed)])
    config = CandleConfig(grace=timedelta(seconds=2), clock="event")
    flow = build_flow(
        "user", _Source(market, gate, False), config, sinks, CONFIG, control=_Source(changes, gate, True)
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)

    values = [v for v in computed if type(v) is IndicatorValue]
    user = sorted(
        (v.symbol, v.timeframe, v.time, v.values["value"]) for v in values if v.indicator == "sma_user"
    )
    configured = sorted(
        (v.symbol, v.timeframe, v.time, v.values["value"])
        for v in values
        if v.indicator == "sma" and (v.symbol, v.timeframe) == ("BTC-USDT", "1m")
    )
    assert len(user) >= 20 and user == configured


class _Announcing(ControlSource):
    """The real control source, opening the gate once it has handed its first changes to the dataflow."""

    def __init__(self, store: ControlStore, stop: threading.Event, gate: _Gate) -> None:
        super().__init__(store, stop, interval=timedelta(milliseconds=50))
        self.gate = gate

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ControlPartition:
        part = super().build_part(step_id, for_part, resume_state)
        gate, take = self.gate, part.next_batch

        def next_batch() -> list[ControlChange]:
            if gate.sent:
                gate.open.set()
            batch = take()
            gate.sent = gate.sent or bool(batch)
            return batch

        part.next_batch = next_batch  # type: ignore[method-assign]
        return part


class _Trades(_Source):
    """The market once the gate opens; its end stops the flow (the control source ends with it)."""

    def __init__(self, items: list[Any], gate: _Gate, stop: threading.Event) -> None:
        super().__init__(items, gate, False)
        self.stop = stop

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> Any:
        part = super().build_part(step_id, for_part, resume_state)
        take, stop = part.next_batch, self.stop

        def next_batch() -> list[Any]:
            try:
                return take()
            except StopIteration:
                stop.set()
                raise

        part.next_batch = next_batch  # type: ignore[method-assign]
        return part


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bot_started_in_the_database_trades_in_the_flow(pg_url: str, workers: int) -> None:
    """The real ControlSource over PostgreSQL: a bot added and started with the control store is loaded
    by the flow and trades the 1m candles like a backtest over them."""
    migrate(pg_url)
    with ControlStore(pg_url) as store:
        store.add_bot(parse_bot_config({**CONFIG_BOT, "name": "db-bot"}))
        store.start_bot("db-bot")
    gate, stop = _Gate(), threading.Event()
    candles: list[Candle] = []
    progress: list[BotProgress] = []
    sinks = FlowSinks(candles=[TestingSink(candles)], bots=[TestingSink(progress)])
    config = CandleConfig(grace=timedelta(seconds=2), clock="event")
    control = _Announcing(ControlStore(pg_url), stop, gate)
    flow = build_flow("db", _Trades(trades("BTC-USDT", 40, 5), gate, stop), config, sinks, control=control)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)

    minutes = sorted((c for c in candles if c.timeframe == "1m"), key=lambda c: c.close_time)
    expected = backtest(minutes)
    assert expected and [f for p in sorted(progress, key=lambda p: p.last_close) for f in p.fills] == expected
