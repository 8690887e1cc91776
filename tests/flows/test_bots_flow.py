"""Bots in the running graph (``flows.graph.build_flow`` with a control source), on 1 and 2 workers: a
bot started before the market's first candle takes the fills of a backtest over the 1m candles the
flow built (``flows.backtest.run_backtest``), stores them once and publishes its account at each close."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, cluster_main, run_main

from configs.indicators import parse_indicator_config
from connectors.memory import BatchSource, in_batches
from flows.backtest import run_backtest
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.backtest import AccountSettings
from market.bots import BotProgress, BotUpdate
from market.control import BotChange
from market.types import Candle, Trade
from tests.flows.test_bots_step import CONFIG

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ACCOUNT = AccountSettings.from_bps(1000.0, 1.0, 10.0, 5.0, True)


def trades(symbol: str, minutes: int, seed: int) -> list[Trade]:
    rng = random.Random(seed)
    price, out = 100.0, []
    for i in range(minutes * 3):
        price = round(price * (1 + rng.uniform(-0.004, 0.004)), 2)
        at = T0 + i * timedelta(seconds=20) + timedelta(seconds=1)
        out.append(Trade("okx", symbol, i + 1, Decimal(repr(price)), Decimal(1), "buy", at))
    return out


class _Gate:
    """Changes first: the control partition opens the gate once its items are in the dataflow, and the
    trades wait for it (so the bots' changes reach the bots step before the first candle)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.sent = False


class _Part(StatefulSourcePartition[object, None]):
    def __init__(self, items: Sequence[Any], gate: _Gate, control: bool) -> None:
        self.items, self.gate, self.control, self.sent = items, gate, control, False

    def next_batch(self) -> list[Any]:
        if self.control:
            if self.sent:
                self.gate.open.set()
                raise StopIteration
            self.sent = True
            return list(self.items)
        if not self.gate.open.is_set():
            return []
        if self.sent:
            raise StopIteration
        self.sent = True
        return list(self.items)

    def snapshot(self) -> None:
        return None


class _Source(FixedPartitionedSource[object, None]):
    def __init__(self, items: Sequence[Any], gate: _Gate, control: bool) -> None:
        self.items, self.gate, self.control = items, gate, control

    def list_parts(self) -> list[str]:
        return ["one"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Part:
        return _Part(self.items, self.gate, self.control)


def bot(change_id: int, action: str, bot_id: int, symbol: str, state: str) -> BotChange:
    config = {**CONFIG, "name": f"bot{bot_id}", "symbol": symbol}
    return BotChange(change_id, action, bot_id, f"bot{bot_id}", "okx", symbol, "1m", state, config)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2])
def test_bots_in_the_flow_take_the_fills_of_a_backtest_over_its_candles(workers: int) -> None:
    market = trades("BTC-USDT", 45, 1) + trades("ETH-USDT", 45, 2)
    market.sort(key=lambda t: t.ts_event)
    changes = [
        bot(1, "add", 1, "BTC-USDT", "created"),
        bot(2, "add", 2, "ETH-USDT", "created"),
        bot(3, "start", 1, "BTC-USDT", "running"),
        bot(4, "start", 2, "ETH-USDT", "running"),
    ]
    gate = _Gate()
    candles: list[Candle] = []
    progress: list[BotProgress] = []
    live: list[Any] = []
    sinks = FlowSinks(
        candles=[TestingSink(candles)], bots=[TestingSink(progress)], fanout=[TestingSink(live)]
    )
    config = CandleConfig(grace=timedelta(seconds=2), clock="event")
    flow = build_flow(
        "bots", _Source(market, gate, False), config, sinks, control=_Source(changes, gate, True)
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)

    strategy = parse_indicator_config(
        {"profiles": [{"strategies": [{"strategy": "ema_crossover", "params": {"fast": 2, "slow": 3}}]}]}
    )
    for bot_id, symbol in ((1, "BTC-USDT"), (2, "ETH-USDT")):
        minutes = sorted(
            (c for c in candles if c.symbol == symbol and c.timeframe == "1m"), key=lambda c: c.close_time
        )
        (expected,) = run_backtest(BatchSource(in_batches(minutes, 10)), strategy, ACCOUNT)
        mine = sorted((p for p in progress if p.bot_id == bot_id), key=lambda p: p.last_close)
        assert expected.fills and [f for p in mine for f in p.fills] == expected.fills
        assert [e for p in mine for e in p.equity] == list(expected.equity)
        updates = [u for u in live if type(u) is BotUpdate and u.bot == f"bot{bot_id}"]
        assert sorted(u.time for u in updates) == [c.close_time for c in minutes]
