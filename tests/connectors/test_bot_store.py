"""The bots' records against a real PostgreSQL: one idempotent transaction per batch, the state only
moving forward, a failed batch kept and written with the next, a removed bot skipped; and the live
message of a bot's account (read back with the codec)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from configs.bots import parse_bot_config
from connectors.bot_store import BotStates, BotWriter
from connectors.control_store import ControlStore
from connectors.redis_codec import decode, encode, payload_of
from market.backtest import AccountSettings
from market.bots import BotProgress, BotRunner, BotUpdate
from market.strategies import build_strategy
from sql.migrate import migrate
from tests.market.test_bots import candles_of

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def new_bot(url: str, name: str) -> int:
    with ControlStore(url) as store:
        config = {"name": name, "symbol": "BTC-USDT", "timeframe": "1m", "strategy": "ema_crossover"}
        return store.add_bot(parse_bot_config(config | {"params": {"fast": 2, "slow": 3}})).bot_id


def progress_of(bot_id: int, closes: list[float]) -> list[BotProgress]:
    """One BotProgress per candle of a runner over ``closes`` (a path that trades)."""
    runner = BotRunner(build_strategy("ema_crossover", fast=2, slow=3), AccountSettings(short=True))
    out = []
    for candle in candles_of(closes):
        step = runner.on_candle(candle)
        assert step is not None and runner.last_close is not None
        out.append(BotProgress(bot_id, "b", step.fills, (step.equity,), runner.last_close, runner.dumps()))
    return out


CLOSES: list[float] = [100, 99, 98, 99, 101, 104, 103, 100, 97, 96, 99, 103, 104]


def table(url: str, name: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2")]  # fixed names only


def test_a_batch_written_twice_stores_each_row_once(pg_url: str) -> None:
    migrate(pg_url)
    bot_id = new_bot(pg_url, "twice")
    batch = progress_of(bot_id, CLOSES)
    writer = BotWriter(pg_url)
    try:
        assert writer.write(batch[:8]) and writer.write(batch)
    finally:
        writer.close()
    fills = [f for p in batch for f in p.fills]
    assert len(fills) >= 3
    stored = table(pg_url, "bot_fills")
    assert [(r[1], r[4], r[5], r[6], r[7]) for r in stored] == [
        (f.time, f.side, f.price, f.quantity, f.fee) for f in fills
    ]
    exits_and_entries = {f.time for f in fills if sum(g.time == f.time for g in fills) == 2}
    assert exits_and_entries and {r[1] for r in stored if r[2] == 1} == exits_and_entries
    assert [r[1] for r in table(pg_url, "bot_equity")] == [p.last_close for p in batch]
    (state,) = table(pg_url, "bot_state")
    assert state[1] == batch[-1].last_close
    resumed = BotStates(pg_url).runner(bot_id)
    assert resumed is not None and resumed.last_close == batch[-1].last_close
    assert BotStates(pg_url).runner(bot_id + 1) is None


def test_the_state_only_moves_forward_and_a_removed_bot_is_skipped(pg_url: str) -> None:
    migrate(pg_url)
    kept, removed = new_bot(pg_url, "kept"), new_bot(pg_url, "removed")
    writer = BotWriter(pg_url)
    try:
        assert writer.write(progress_of(kept, CLOSES))
        assert writer.write(progress_of(kept, CLOSES[:5]))  # an older state: not stored over the newer
        with ControlStore(pg_url) as store:
            store.remove_bot("removed")
        assert writer.write(progress_of(removed, CLOSES))
    finally:
        writer.close()
    (state,) = table(pg_url, "bot_state")
    assert (state[0], state[1]) == (kept, T0 + len(CLOSES) * timedelta(minutes=1))
    assert {r[0] for r in table(pg_url, "bot_equity")} == {kept}


def test_a_failed_batch_is_kept_and_written_with_the_next(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(pg_url)
    bot_id = new_bot(pg_url, "kept")
    batch = progress_of(bot_id, CLOSES)
    writer = BotWriter(pg_url.replace("/t_", "/missing_"), connect_timeout=2, retry_initial=0)
    try:
        with caplog.at_level(logging.WARNING, logger="connectors.bot_store"):
            assert not writer.write(batch[:4]) and not writer.write(batch[4:8])  # two attempts
        assert len([r for r in caplog.records if "cannot be written" in r.message]) == 1
        writer.url = pg_url  # the database answers again
        assert writer.write(batch[8:]) and writer.pending == []
    finally:
        writer.close()
    assert [r[1] for r in table(pg_url, "bot_equity")] == [p.last_close for p in batch]


def test_after_a_failure_the_next_attempt_waits_and_closing_makes_a_last_one(pg_url: str) -> None:
    migrate(pg_url)
    bot_id = new_bot(pg_url, "later")
    batch = progress_of(bot_id, CLOSES)
    writer = BotWriter(pg_url.replace("/t_", "/missing_"), connect_timeout=2, retry_initial=60)
    try:
        assert not writer.write(batch[:4])
        writer.url = pg_url
        assert not writer.write(batch[4:])  # not due: not tried, kept
        assert writer.pending == batch and table(pg_url, "bot_equity") == []
    finally:
        writer.close()
    assert [r[1] for r in table(pg_url, "bot_equity")] == [p.last_close for p in batch]


def test_a_bot_update_is_published_on_the_bots_channel() -> None:
    update = BotUpdate("ema-btc", T0, 1012.5, 12.5, 10.0, 100.0, "paused")
    kind, channel, payload = payload_of(update)
    assert (kind, channel) == ("bot", "tcp:bots:ema-btc")
    assert decode(encode(payload)) == {
        "kind": "bot",
        "bot": "ema-btc",
        "time": T0,
        "equity": 1012.5,
        "cash": 12.5,
        "position": 10.0,
        "close": 100.0,
        "state": "paused",
    }
