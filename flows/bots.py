"""The bots step of the live flow: each series' final candles and its bots' changes, keyed by series
(docs/control.md).

    candles (final, every timeframe) ─┐
    bot changes (ControlSource) ──────┴─► by series ─► bots ─► BotProgress (per bot and batch) ─► BotSink
                                                             └► BotUpdate (per bot and candle) ─► fan-out

A series' state is its bots, each a ``market.bots.BotRunner`` (the backtest's accounting) once started.
A change sets a bot's state: ``add`` registers it, ``start`` gives it a fresh runner (it trades from the
next final candle of its series) or resumes a paused one, ``pause``/``stop`` go to the runner,
``remove`` drops it. ``load`` (at start) restores the runner stored in ``bot_state`` (or a fresh one if it
never processed a candle), and before its first candle replays the stored candles it missed (close in
(last close, that candle's open]), so it continues exactly as if the flow had not stopped. A runner
skips candles it has already processed (close <= its last close).

The database holds the bots' state (written with every batch by ``connectors.bot_store.BotSink``), so
the step's recovery snapshot holds none: a resume reloads the bots from the database as a restart does.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeGuard

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic
from pydantic import ValidationError

from configs.bots import parse_bot_config
from market.backtest import EquityPoint, Fill
from market.bots import BotProgress, BotRunner, BotUpdate
from market.control import BotChange, ControlChange
from market.types import Candle

log = logging.getLogger(__name__)

BotIn = Candle | BotChange
BotOut = BotProgress | BotUpdate
Runners = Callable[[int], BotRunner | None]
"""A bot's stored runner (``connectors.bot_store.BotStates.runner``), None when it has none."""
CandleRange = Callable[[str, str, str, datetime | None, datetime], Iterable[Candle]]
"""A series' stored final candles with close in (after, until], oldest first
(``connectors.resume.StoredHistory.range``)."""


@dataclass(frozen=True)
class BotResume:
    """Where bots resume from after a restart: their stored runners and the stored candles."""

    runners: Runners
    history: CandleRange


def _no_runner(bot_id: int) -> BotRunner | None:
    return None


def _no_candles(
    exchange: str, symbol: str, timeframe: str, after: datetime | None, until: datetime
) -> Iterable[Candle]:
    return ()


NO_RESUME = BotResume(_no_runner, _no_candles)
"""Nothing stored: every bot starts afresh (tests, flows without a database)."""
UNREADABLE = (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError, ValueError)
"""What reading a stored runner raises when it was written by code that no longer reads the same."""


@dataclass
class BotSlot:
    """One bot of the series: its runner once started; ``catch_up`` until the first candle after a load."""

    name: str
    runner: BotRunner | None = None
    catch_up: bool = False


@dataclass
class SeriesBots:
    """A series' bots by id."""

    bots: dict[int, BotSlot] = field(default_factory=dict)


@dataclass
class _Pending:
    fills: list[Fill] = field(default_factory=list)
    equity: list[EquityPoint] = field(default_factory=list)


def _fresh(change: BotChange) -> BotRunner | None:
    try:
        config = parse_bot_config(change.config)
        return BotRunner(config.build_strategy(), config.account_settings(), config.close_on_stop)
    except (ValidationError, ValueError) as error:  # validated when written: a stored row gone bad
        log.error("bot %s: its configuration is not valid, it is not run (%s)", change.name, error)
        return None


class BotsLogic(StatefulBatchLogic[BotIn, BotOut, SeriesBots]):
    """One series' bots over a batch of its candles and bot changes, in arrival order."""

    def __init__(self, resume: BotResume, state: SeriesBots | None) -> None:
        self.resume = resume
        self.state = state or SeriesBots()
        self._pending: dict[int, _Pending] = {}
        self._updates: list[BotOut] = []

    def on_batch(self, values: list[BotIn]) -> tuple[Iterable[BotOut], bool]:
        for item in values:
            if type(item) is Candle:
                self._candle(item)
            else:
                self._change(item)  # type: ignore[arg-type]
        out, self._updates = self._updates, []
        bots = self.state.bots
        for bot_id, pending in self._pending.items():
            slot = bots.get(bot_id)
            runner = None if slot is None else slot.runner
            if slot is None or runner is None or runner.last_close is None:
                continue  # removed later in the batch
            fills, equity = tuple(pending.fills), tuple(pending.equity)
            out.append(BotProgress(bot_id, slot.name, fills, equity, runner.last_close, runner.dumps()))
        self._pending = {}
        for bot_id in [i for i, slot in bots.items() if slot.runner is not None and slot.runner.done]:
            del bots[bot_id]  # stopped and stored: it processes nothing more
        return out, StatefulBatchLogic.RETAIN if bots else StatefulBatchLogic.DISCARD

    def _change(self, change: BotChange) -> None:
        bots = self.state.bots
        slot = bots.get(change.bot_id)
        if change.action == "remove":
            bots.pop(change.bot_id, None)
            return
        if slot is None:
            slot = bots[change.bot_id] = BotSlot(change.name)
        slot.name = change.name
        if change.action == "load" and not self._load(change, slot):
            del bots[change.bot_id]
            return
        if change.state == "created":
            return
        if slot.runner is None and change.state != "stopped":
            slot.runner = _fresh(change)
        if slot.runner is None:
            del bots[change.bot_id]  # stopped before it ever ran, or not valid
            return
        slot.runner.set_state(change.state)

    def _load(self, change: BotChange, slot: BotSlot) -> bool:
        """The stored runner, unless this step already has a newer one (a load is idempotent); False
        when the stored one cannot be read (the bot is not run: afresh, its account would restart)."""
        try:
            stored = self.resume.runners(change.bot_id)
        except UNREADABLE as error:
            log.error(
                "bot %s: its stored state cannot be read (%s: %s); it is not run (remove it, or add it "
                "again under another name)",
                change.name,
                type(error).__name__,
                error,
            )
            return False
        if stored is None or stored.last_close is None:
            return True
        held = slot.runner
        if held is None or held.last_close is None or held.last_close < stored.last_close:
            slot.runner = stored
            slot.catch_up = True
        return True

    def _candle(self, candle: Candle) -> None:
        for bot_id, slot in self.state.bots.items():
            runner = slot.runner
            if runner is None:
                continue
            if slot.catch_up:
                slot.catch_up = False
                last = runner.last_close
                if last is not None and candle.open_time > last:
                    missed = self.resume.history(
                        candle.exchange, candle.symbol, candle.timeframe, last, candle.open_time
                    )
                    for stored in missed:
                        self._step(bot_id, slot.name, runner, stored)
            self._step(bot_id, slot.name, runner, candle)

    def _step(self, bot_id: int, name: str, runner: BotRunner, candle: Candle) -> None:
        step = runner.on_candle(candle)
        if step is None:
            return
        pending = self._pending.setdefault(bot_id, _Pending())
        pending.fills.extend(step.fills)
        e = step.equity
        pending.equity.append(e)
        self._updates.append(BotUpdate(name, e.time, e.equity, e.cash, e.position, e.close, step.state))

    def snapshot(self) -> SeriesBots:
        return SeriesBots()  # the bots' state is in the database (bot_state), reloaded on resume


@dataclass(frozen=True)
class BotsOut:
    """The bots step's outputs by kind."""

    progress: Stream[BotProgress]
    """Per bot and batch: what to store."""
    updates: Stream[BotUpdate]
    """Per bot and candle: what to publish."""


def series_of(item: Candle | ControlChange) -> str:
    """``exchange|symbol|timeframe`` of a candle or a change (``flows.indicators.series_key``'s format)."""
    return f"{item.exchange}|{item.symbol}|{item.timeframe}"


def _is_progress(item: BotOut) -> TypeGuard[BotProgress]:
    return type(item) is BotProgress


@operator
def bot_stream(
    step_id: str, candles: Stream[Candle], changes: Stream[BotChange], resume: BotResume
) -> BotsOut:
    """Run the bots of each series on its final candles."""
    merged: Stream[BotIn] = op.merge("bot_input", candles, changes)
    keyed = op.key_on("by_series", merged, series_of)
    # ("exchange|symbol|timeframe", Candle | BotChange)
    done = op.key_rm("unkey", op.stateful_batch("bots", keyed, partial(BotsLogic, resume)))
    # BotProgress | BotUpdate
    split = op.branch("split", done, _is_progress)
    return BotsOut(split.trues, split.falses)  # type: ignore[arg-type]
