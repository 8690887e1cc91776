"""The bot runner against the backtest: a runner fed the candles of a period takes the fills and marks
the equity of a backtest over the same candles (``flows.backtest.run_backtest``, the dataflow the
backtest command runs); pause, stop and a pickle round trip against the account fed directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from configs.indicators import parse_indicator_config
from connectors.memory import BatchSource, in_batches
from flows.backtest import run_backtest
from market.backtest import Account, AccountSettings
from market.bots import BotRunner, BotStep
from market.strategies import build_strategy
from market.types import Candle

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("ema_crossover", {"fast": 2, "slow": 3}),
    ("ema_crossover", {"fast": 3, "slow": 7}),
    ("rsi_reversion", {"timeperiod": 3, "oversold": 40.0, "overbought": 60.0, "exit_level": 50.0}),
    ("bollinger_breakout", {"timeperiod": 4, "nbdev": 1.0}),
]


def candles_of(closes: list[float], first_open: float = 100.0) -> list[Candle]:
    """Contiguous 1m candles: each opens at the previous close."""
    out = []
    previous = Decimal(repr(first_open))
    for i, value in enumerate(closes):
        close = Decimal(repr(value))
        out.append(
            Candle(
                "okx", "BTC-USDT", "1m", T0 + i * MINUTE, T0 + (i + 1) * MINUTE, previous,
                max(previous, close), min(previous, close), close, Decimal(1), close, 1, None, None, None,
            )
        )  # fmt: skip
        previous = close
    return out


price_paths = st.lists(
    st.floats(50, 150, allow_nan=False).map(lambda x: round(x, 2)), min_size=2, max_size=60
)
accounts = st.builds(
    AccountSettings,
    cash=st.sampled_from([1_000.0, 10_000.0]),
    fraction=st.sampled_from([0.5, 1.0]),
    fee=st.sampled_from([0.0, 0.001]),
    slippage=st.sampled_from([0.0, 0.0005]),
    short=st.booleans(),
)


def runner(index: int, account: AccountSettings, close_on_stop: bool = False) -> BotRunner:
    name, params = STRATEGIES[index]
    return BotRunner(build_strategy(name, **params), account, close_on_stop)


def fed(bot: BotRunner, candles: list[Candle]) -> list[BotStep | None]:
    return [bot.on_candle(c) for c in candles]


@settings(max_examples=40, deadline=None)
@given(closes=price_paths, which=st.integers(0, len(STRATEGIES) - 1), account=accounts)
def test_a_runner_takes_the_fills_of_a_backtest_over_the_same_candles(
    closes: list[float], which: int, account: AccountSettings
) -> None:
    candles = candles_of(closes)
    steps = fed(runner(which, account), candles)
    assert all(step is not None for step in steps)

    name, params = STRATEGIES[which]
    config = parse_indicator_config(
        {"profiles": [{"strategies": [{"strategy": name, "label": "bot", "params": params}]}]}
    )
    (run,) = run_backtest(BatchSource(in_batches(candles, 7)), config, account)
    assert [f for s in steps if s is not None for f in s.fills] == run.fills
    assert [s.equity for s in steps if s is not None] == list(run.equity)
    assert [t for s in steps if s is not None for t in s.closed] == run.closed
    last = steps[-1]
    assert last is not None and last.position == run.open_trade


def direct(
    candles: list[Candle], which: int, account: AccountSettings, kept: set[int] | None = None
) -> Account:
    """The account fed the strategy's signals directly (those of candles indexed in ``kept``, or all)."""
    name, params = STRATEGIES[which]
    strategy, acc = build_strategy(name, **params), Account(account)
    for i, candle in enumerate(candles):
        acc.on_candle(candle)
        signal = strategy.update(candle)
        if signal is not None and (kept is None or i in kept):
            acc.on_signal(signal)
    return acc


@settings(max_examples=40, deadline=None)
@given(
    closes=price_paths.filter(lambda c: len(c) >= 6),
    which=st.integers(0, len(STRATEGIES) - 1),
    account=accounts,
    data=st.data(),
)
def test_a_paused_bot_takes_no_fills_and_drops_the_held_signal(
    closes: list[float], which: int, account: AccountSettings, data: st.DataObject
) -> None:
    candles = candles_of(closes)
    pause = data.draw(st.integers(1, len(candles) - 2), label="pause before candle")
    resume = data.draw(st.integers(pause + 1, len(candles) - 1), label="resume before candle")
    bot = runner(which, account)
    steps = fed(bot, candles[:pause])
    bot.set_state("paused")
    paused = fed(bot, candles[pause:resume])
    bot.set_state("running")
    steps += paused + fed(bot, candles[resume:])

    assert all(s is not None and s.fills == () for s in paused)
    assert all(s is not None and s.state == "paused" for s in paused)
    # The account fed every signal except those held or made while paused (candles pause-1 .. resume-1).
    kept = {i for i in range(len(candles)) if i < pause - 1 or i >= resume}
    oracle = direct(candles, which, account, kept)
    last = steps[-1]
    assert last is not None and last.equity == oracle.equity_point()


def long_then_stop(close_on_stop: bool) -> tuple[BotRunner, list[Candle]]:
    """A bot that bought (ema 2/3 on a rising path) and was stopped holding the position."""
    candles = candles_of([100, 99, 98, 99, 101, 104, 108, 112, 113, 114])
    bot = runner(0, AccountSettings(cash=1_000.0, fee=0.001), close_on_stop)
    fed(bot, candles[:8])
    assert bot.account.position > 0
    bot.set_state("stopped")
    return bot, candles


def test_a_stop_with_close_on_stop_sells_at_the_next_open_then_processes_nothing() -> None:
    bot, candles = long_then_stop(close_on_stop=True)
    held = bot.account.position
    step = bot.on_candle(candles[8])
    assert step is not None and step.state == "stopped"
    (sell,) = step.fills
    assert (sell.side, sell.time, sell.price, sell.quantity) == ("sell", candles[8].open_time, 112.0, held)
    assert sell.signal_time == candles[7].close_time
    assert step.position is None and step.equity.position == 0
    assert bot.on_candle(candles[9]) is None
    bot.set_state("stopped")  # again: nothing changes
    assert bot.on_candle(candles[9]) is None


def test_a_stop_without_close_on_stop_keeps_the_position_as_last_marked() -> None:
    bot, candles = long_then_stop(close_on_stop=False)
    before = bot.account.equity_point()
    assert bot.on_candle(candles[8]) is None
    assert bot.account.equity_point() == before and before.position > 0
    assert bot.last_close == candles[7].close_time


@settings(max_examples=30, deadline=None)
@given(closes=price_paths, which=st.integers(0, len(STRATEGIES) - 1), account=accounts, data=st.data())
def test_a_runner_pickled_mid_run_continues_identically(
    closes: list[float], which: int, account: AccountSettings, data: st.DataObject
) -> None:
    candles = candles_of(closes)
    cut = data.draw(st.integers(0, len(candles)), label="cut")
    whole = fed(runner(which, account), candles)
    first = runner(which, account)
    resumed = fed(first, candles[:cut])
    again = BotRunner.loads(first.dumps())
    assert fed(again, candles[:cut]) == [None] * cut  # already processed: skipped
    assert resumed + fed(again, candles[cut:]) == whole
