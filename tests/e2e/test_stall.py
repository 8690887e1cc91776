"""A silent socket closes no candle, all real: the simulator replays the BTC-USDT tape at real speed and
goes silent for 45 s (no trades, no pongs) after some pushes on every connection. The live flow must
notice, reconnect and backfill over REST, and its candles must wait for the backfill: no trade is late,
and every candle equals a clean replay of the same tape."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from sql.migrate import migrate
from tests.e2e.livekit import (
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
from tests.flows.flowkit import BTC_TAPE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

START_OFFSET = 520  # tape seconds before the live replay starts: about two and a half minutes remain
STALL_SECONDS = 45


def test_a_45_second_stall_at_real_speed_files_no_trade_as_late(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    simulator, okx = start_simulator(
        BTC_TAPE,
        "--start-offset",
        str(START_OFFSET),
        "--speed",
        "1",
        "--stall-after-messages",
        "300",
        "--stall-seconds",
        str(STALL_SECONDS),
    )
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "INSTRUMENTS": "BTC-USDT",
        "CANDLE_GRACE": "2",
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "INFO",
        **okx,
    }
    log = tmp_path / "flow.log"
    flow = start(FLOW, env, log)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            wait_for_close(conn, Market.of_when_stored(BTC_TAPE, conn, 60).last_full_close, flow, log, 420)
            market = Market.of(BTC_TAPE, conn)
            stored = stored_candles(conn, "BTC-USDT")
            late = conn.execute("SELECT count(*) FROM late_trades").fetchone()
            recoveries = [
                r[0]
                for r in conn.execute(
                    "SELECT recovery_seconds FROM gaps WHERE reason = 'reconnect' ORDER BY detected_at"
                )
            ]
            gaps = conn.execute(
                "SELECT count(*), bool_and(filled) FROM gaps WHERE reason = 'reconnect'"
            ).fetchone()
            trades = stored_trades(conn, "BTC-USDT", market.last_full_close)
    finally:
        stop(flow)
        stop(simulator)
    if report := os.environ.get("KILL_REPORT"):  # lost connection -> backfilled, per stall (seconds)
        with open(report, "a") as handle:
            handle.write(json.dumps({"stall_recovery_s": recoveries}) + "\n")
    text = log.read_text()
    assert late == (0,), text[-3000:]
    assert gaps is not None and gaps[0] >= 1 and gaps[1], (gaps, text[-3000:])  # the stall was noticed
    assert trades == market.trades_between(int(trades[0][0]), market.last_full_close)
    assert compare_with_replay(stored, market.replay(tmp_path), "stall") >= 2
