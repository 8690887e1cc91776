"""SIGKILL at random instants, all real: the OKX simulator replays the BTC-USDT tape rebased to now, the
live flow (`python -m bytewax.run flows.okx`) is killed with SIGKILL three times (mid-minute, during
its start and REST backfill, at any point of a database write) and restarted each time, resuming from
the database alone or from Bytewax recovery snapshots too. At the end the stored trades are exactly the
market's and every candle, 1m to 1d, equals a clean replay of the same tape, with no candle written
twice and no trade late.

The instants are drawn from a seed printed on failure (set KILL_SEED to rerun one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from app.resources import recovery_env
from configs.settings import RecoverySettings, Settings
from sql.migrate import migrate
from tests.e2e.livekit import (
    FIELDS,
    FLOW,
    Market,
    compare_with_replay,
    start,
    start_simulator,
    stop,
    stored_candles,
    stored_trades,
    wait_for_close,
)
from tests.flows.flowkit import BTC_TAPE, XRP_TAPE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

START_OFFSET = 240  # tape seconds before the live replay starts (the rest is REST history)
SPEED = 6
TAPE_SECONDS = 665


@pytest.mark.parametrize("recovery", [False, True], ids=["database-resume", "bytewax-recovery"])
def test_sigkill_at_random_instants_loses_no_trade_and_rewrites_no_candle(
    recovery: bool, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KILL_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    migrate(pg_url)
    simulator, okx = start_simulator(BTC_TAPE, "--start-offset", str(START_OFFSET), "--speed", str(SPEED))
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "INSTRUMENTS": "BTC-USDT",
        "CANDLE_GRACE": "6",
        "FEED__FUTURE_TOLERANCE": "3600",  # faster than real time, the tape's times run ahead of the clock
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "INFO",
        **okx,
    }
    if recovery:  # snapshots every 2 s in DATA_DIR/recovery, as `tcp.py up` sets them up
        options = RecoverySettings(enabled=True, snapshot_interval=timedelta(seconds=2))
        env |= recovery_env(Settings(data_dir=tmp_path / "data", recovery=options))
    log = tmp_path / "flow.log"
    span = (TAPE_SECONDS - START_OFFSET) / SPEED
    first_kill = rng.uniform(10, span / 3)
    kills = [first_kill, first_kill + rng.uniform(3, 6), rng.uniform(span / 2, span - 10)]
    context = f"seed {seed}, kills at {[round(k, 1) for k in kills]} s"
    restarts: list[datetime] = []
    began = time.monotonic()
    flow = start(FLOW, env, log)
    try:
        for at in kills:
            time.sleep(max(0.0, began + at - time.monotonic()))
            assert flow.poll() is None, f"the flow exited ({context}):\n{log.read_text()[-3000:]}"
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
            time.sleep(rng.uniform(0.2, 3.0))
            restarts.append(datetime.now(UTC))
            flow = start(FLOW, env, log)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            market = Market.of(BTC_TAPE, conn)
            wait_for_close(conn, market.last_full_close, flow, log, span + 120)
            time.sleep(2)
            trades = stored_trades(conn, "BTC-USDT", market.last_full_close)
            stored = stored_candles(conn, "BTC-USDT")
            conflicts = conn.execute("SELECT count(*) FROM candle_conflicts").fetchone()
            late = conn.execute("SELECT count(*) FROM late_trades").fetchone()
            resumed_at = [
                r[0]
                for r in conn.execute(
                    "SELECT detected_at FROM gaps WHERE reason = 'resume' AND filled ORDER BY detected_at"
                )
            ]
            unfilled = conn.execute("SELECT count(*) FROM gaps WHERE NOT filled").fetchone()
    finally:
        stop(flow)
        stop(simulator)

    assert trades == market.trades_between(int(trades[0][0]), market.last_full_close), (
        context
    )  # exactly the market's
    assert stored["1m"][0][1 + FIELDS.index("complete")] is False, "the first minute began before the feed"
    assert compare_with_replay(stored, market.replay(tmp_path), context) >= 6, context
    assert conflicts == (0,), context
    assert late == (0,), context
    assert unfilled == (0,), context
    # Restart -> the stored data's end backfilled over REST and handed to the dataflow (seconds).
    recovery_seconds = [
        round((next(t for t in resumed_at if t > r) - r).total_seconds(), 2)
        for r in restarts
        if any(t > r for t in resumed_at)
    ]
    assert recovery or len(recovery_seconds) == len(kills), (resumed_at, restarts, context)
    if report := os.environ.get("KILL_REPORT"):
        with open(report, "a") as handle:
            handle.write(
                json.dumps({"recovery": recovery, "seed": seed, "restart_to_backfilled_s": recovery_seconds})
                + "\n"
            )


def test_a_quiet_instrument_killed_between_trades_keeps_every_stored_candle(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """XRP-ETH trades a few times a minute with flat minutes between: candles close on time, not on
    trades. A kill between trades and a restart change no stored candle (values and insertion time),
    leave no minute missing or doubled, and the continued series equals the clean replay."""
    migrate(pg_url)
    simulator, okx = start_simulator(XRP_TAPE, "--start-offset", "3300", "--speed", "3")
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "INSTRUMENTS": "XRP-ETH",
        "CANDLE_GRACE": "2",
        "FEED__FUTURE_TOLERANCE": "3600",  # at 3x the tape's times run ahead of the receive clock
        "DATA_DIR": str(tmp_path / "data"),
        **okx,
    }
    log = tmp_path / "flow.log"
    flow = start(FLOW, env, log)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            market = Market.of_when_stored(XRP_TAPE, conn, 60)
            wait_for_close(conn, market.first_close(conn, 60) + timedelta(minutes=2), flow, log, 150)
            before = conn.execute(
                "SELECT time, close, trade_count, inserted_at FROM candles_1m ORDER BY time"
            ).fetchall()
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
            time.sleep(3)
            flow = start(FLOW, env, log)
            end = before[-1][0] + timedelta(minutes=3)
            wait_for_close(conn, end, flow, log, 240)
            after = conn.execute(
                "SELECT time, close, trade_count, inserted_at FROM candles_1m ORDER BY time"
            ).fetchall()
            stored = stored_candles(conn, "XRP-ETH")
            conflicts = conn.execute("SELECT count(*) FROM candle_conflicts").fetchone()
    finally:
        stop(flow)
        stop(simulator)
    assert after[: len(before)] == before  # not one stored candle changed
    closes = [row[0] for row in after]
    assert closes == [closes[0] + timedelta(minutes=i) for i in range(len(closes))]  # no hole, no double
    assert any(row[2] == 0 for row in after), "a flat minute closed on time"
    assert conflicts == (0,)
    assert compare_with_replay(stored, market.replay(tmp_path), "quiet") >= 4
