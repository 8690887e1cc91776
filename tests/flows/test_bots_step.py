"""The bots step on its own (``flows.bots.BotsLogic``, no Bytewax): changes drive the bots of a series,
and a bot restored after a restart, with the candles it missed replayed from the store, takes exactly
the fills of an uninterrupted backtest over the same candles (``flows.backtest.run_backtest``)."""

from __future__ import annotations

import logging
import pickle
import random
from datetime import datetime
from typing import Any

import pytest
from bytewax.operators import StatefulBatchLogic

from configs.indicators import parse_indicator_config
from connectors.memory import BatchSource, in_batches
from flows.backtest import run_backtest
from flows.bots import BotResume, BotsLogic
from market.backtest import AccountSettings, Fill
from market.bots import BotProgress, BotRunner, BotUpdate
from market.control import BotChange, BotState
from market.types import Candle
from tests.market.test_bots import candles_of

CONFIG: dict[str, Any] = {
    "name": "ema-fast",
    "exchange": "okx",
    "symbol": "BTC-USDT",
    "timeframe": "1m",
    "strategy": "ema_crossover",
    "params": {"fast": 2, "slow": 3},
    "account": {"cash": 1000.0, "fraction": 1.0, "fee_bps": 10.0, "slippage_bps": 5.0, "short": True},
    "close_on_stop": False,
}
ACCOUNT = AccountSettings.from_bps(1000.0, 1.0, 10.0, 5.0, True)


def change(change_id: int, action: str, state: BotState, bot_id: int = 7, **config: Any) -> BotChange:
    name, series = f"bot{bot_id}", ("okx", "BTC-USDT", "1m")
    return BotChange(change_id, action, bot_id, name, *series, state, {**CONFIG, **config})  # type: ignore[arg-type]


def walk(n: int, seed: int = 3) -> list[Candle]:
    rng = random.Random(seed)
    closes, price = [], 100.0
    for _ in range(n):
        price = round(price * (1 + rng.uniform(-0.01, 0.01)), 2)
        closes.append(price)
    return candles_of(closes)


class Store:
    """What the bot sink would have stored, and the stored candles (an in-memory database)."""

    def __init__(self, candles: list[Candle]) -> None:
        self.candles = candles
        self.progress: list[BotProgress] = []

    def runner(self, bot_id: int) -> BotRunner | None:
        mine = [p for p in self.progress if p.bot_id == bot_id]
        return BotRunner.loads(max(mine, key=lambda p: p.last_close).runner) if mine else None

    def range(
        self, exchange: str, symbol: str, tf: str, after: datetime | None, until: datetime
    ) -> list[Candle]:
        return [c for c in self.candles if (after is None or c.close_time > after) and c.close_time <= until]

    def resume(self) -> BotResume:
        return BotResume(self.runner, self.range)


def run(logic: BotsLogic, *batches: list[Any]) -> list[Any]:
    out: list[Any] = []
    for batch in batches:
        items, _ = logic.on_batch(batch)
        out.extend(items)
    return out


def fills(out: list[Any]) -> list[Fill]:
    return [f for p in out if type(p) is BotProgress for f in p.fills]


def backtest(candles: list[Candle]) -> list[Fill]:
    config = parse_indicator_config(
        {"profiles": [{"strategies": [{"strategy": "ema_crossover", "params": {"fast": 2, "slow": 3}}]}]}
    )
    (result,) = run_backtest(BatchSource(in_batches(candles, 10)), config, ACCOUNT)
    return result.fills


def test_a_started_bot_takes_the_backtests_fills_and_publishes_each_close() -> None:
    candles = walk(60)
    store = Store(candles)
    out = run(
        BotsLogic(store.resume(), None), [change(1, "add", "created"), change(2, "start", "running")], candles
    )
    assert fills(out) and fills(out) == backtest(candles)
    updates = [u for u in out if type(u) is BotUpdate]
    assert [u.time for u in updates] == [c.close_time for c in candles]
    assert {(u.bot, u.state) for u in updates} == {("bot7", "running")}


def test_a_restarted_bot_replays_the_candles_it_missed_and_continues_exactly() -> None:
    candles = walk(90)
    store = Store(candles)
    first = BotsLogic(store.resume(), None)
    store.progress += run(
        first, [change(1, "add", "created"), change(2, "start", "running")], *[[c] for c in candles[:40]]
    )
    store.progress = [p for p in store.progress if type(p) is BotProgress]
    # Down while candles 40..54 closed (they are stored); the restarted flow loads the bot, then its
    # first candle is the 56th.
    second = BotsLogic(store.resume(), None)
    later = run(second, [change(2, "load", "running")], candles[55:70], candles[70:])
    assert fills(store.progress) + fills(later) == backtest(candles)
    times = [e.time for p in store.progress + later if type(p) is BotProgress for e in p.equity]
    assert times == [c.close_time for c in candles]  # every close once: none skipped, none twice


def test_a_load_of_a_bot_the_step_holds_further_keeps_the_step_s_runner() -> None:
    candles = walk(30)
    store = Store(candles)
    logic = BotsLogic(store.resume(), None)
    store.progress += [
        p for p in run(logic, [change(1, "start", "running")], candles[:10]) if type(p) is BotProgress
    ]
    ahead = run(logic, candles[10:20])
    assert run(logic, [change(1, "load", "running")], candles[15:20]) == []  # stored is older: nothing again
    rest = run(logic, candles[20:])
    assert fills(store.progress) + fills(ahead) + fills(rest) == backtest(candles)


def test_changes_pause_stop_and_remove() -> None:
    candles = walk(40)
    logic = BotsLogic(Store(candles).resume(), None)
    run(logic, [change(1, "add", "created")])
    assert run(logic, candles[:5]) == []  # created: not trading
    run(logic, [change(2, "start", "running")], candles[5:20])
    paused = run(logic, [change(3, "pause", "paused")], candles[20:30])
    assert fills(paused) == [] and {u.state for u in paused if type(u) is BotUpdate} == {"paused"}
    run(logic, [change(4, "stop", "stopped")])
    items, keep = logic.on_batch(list[Any](candles[30:]))
    assert list(items) == [] and keep == StatefulBatchLogic.DISCARD  # stopped: the series holds no bot
    removed = BotsLogic(Store(candles).resume(), None)
    run(removed, [change(1, "start", "running")], candles[:5])
    items, keep = removed.on_batch([change(2, "remove", "running")])
    assert list(items) == [] and keep == StatefulBatchLogic.DISCARD


def test_stop_with_close_on_stop_flattens_at_the_next_open() -> None:
    candles = walk(60)
    logic = BotsLogic(Store(candles).resume(), None)
    bot = change(1, "start", "running", close_on_stop=True)
    out = run(logic, [bot], candles[:40])
    held = [p for p in out if type(p) is BotProgress][-1].equity[-1].position
    assert held != 0
    last = run(logic, [change(2, "stop", "stopped", close_on_stop=True)], candles[40:])
    (flat,) = fills(last)
    assert flat.time == candles[40].open_time and flat.quantity == abs(held)
    assert flat.side == ("sell" if held > 0 else "buy")
    (update,) = [u for u in last if type(u) is BotUpdate]  # then nothing more
    assert (update.time, update.position, update.state) == (candles[40].close_time, 0.0, "stopped")


def test_a_bot_whose_stored_state_cannot_be_read_is_not_run(caplog: pytest.LogCaptureFixture) -> None:
    candles = walk(20)

    def unreadable(bot_id: int) -> BotRunner | None:
        if bot_id == 7:
            raise pickle.UnpicklingError("invalid load key")
        return None

    logic = BotsLogic(BotResume(unreadable, Store(candles).range), None)
    with caplog.at_level(logging.ERROR, logger="flows.bots"):
        out = run(logic, [change(1, "load", "running"), change(1, "load", "running", bot_id=8)], candles)
    assert {u.bot for u in out if type(u) is BotUpdate} == {"bot8"}  # the other bot runs
    assert [r.message for r in caplog.records if "bot7" in r.message and "cannot be read" in r.message]
