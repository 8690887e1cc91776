"""End to end, all real: the OKX simulator replays a tape rebased to now over websockets, the live flow
(`python -m bytewax.run flows.okx`) ingests it into PostgreSQL and Redis, and the stored candles equal
those of `flows.replay` on the same tape (shifted by the rebase, which keeps the minute grid)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from connectors.redis_reader import RedisLiveReader
from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.flows.flowkit import BTC_TAPE, ms, run_replay
from tests.support.tapes import tape_rows

pytestmark = pytest.mark.slow

START_OFFSET = 240  # tape seconds before the live replay starts (the rest is REST history)
SPEED = 6


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _, err = process.communicate()
    return err


def test_live_flow_over_websockets_equals_the_replay(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    simulator = start(
        [
            sys.executable,
            "-m",
            "connectors.okx.simulator",
            "--tape",
            str(BTC_TAPE),
            "--rebase-now",
            "--start-offset",
            str(START_OFFSET),
            "--speed",
            str(SPEED),
        ]
    )
    assert simulator.stdout is not None
    ready = json.loads(simulator.stdout.readline())
    reader = RedisLiveReader(redis_url)
    subscription = reader.subscribe(["tcp:candles:okx:BTC-USDT:1m", "tcp:provisional:okx:BTC-USDT:1m"])
    flow = start(
        [sys.executable, "-m", "bytewax.run", "flows.okx"],
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "OKX_WS_URL": ready["ws_public"],
            "OKX_REST_URL": ready["rest"],
            "INSTRUMENTS": "BTC-USDT",
            "CANDLE_GRACE": "6",
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "WARNING",
            "FEED__FUTURE_TOLERANCE": "3600",  # at 6x the tape's times run ahead of the receive clock
        },
    )
    rows = tape_rows(BTC_TAPE)
    last_trade = ms(rows[-1]["created_time"])
    last_full_close = last_trade.replace(second=0, microsecond=0)  # the final minute is incomplete
    flow_err = ""
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + (665 - START_OFFSET) / SPEED + 120
            offset = None
            while time.monotonic() < deadline:
                assert flow.poll() is None, f"the flow exited: {stop(flow)}"
                if offset is None:
                    first = conn.execute("SELECT trade_id, time FROM trades ORDER BY time LIMIT 1").fetchone()
                    if first is not None:
                        tape_time = next(
                            ms(r["created_time"]) for r in rows if int(r["trade_id"]) == first[0]
                        )
                        offset = first[1] - tape_time
                if (
                    offset is not None
                    and conn.execute(
                        "SELECT 1 FROM candles_1m WHERE time >= %s", (last_full_close + offset,)
                    ).fetchone()
                ):
                    break
                time.sleep(1)
            else:
                pytest.fail("the live flow did not store the tape's last full minute in time")
            live = conn.execute(
                "SELECT time, open, high, low, close, volume, quote_volume, trade_count, vwap,"
                " first_trade_id, last_trade_id FROM candles_1m WHERE symbol = 'BTC-USDT' ORDER BY time"
            ).fetchall()
            late = conn.execute("SELECT count(*) FROM late_trades").fetchone()
    finally:
        flow_err = stop(flow)
        stop(simulator)
    messages = []
    while (message := subscription.get(timeout=0.2)) is not None:
        messages.append(message)
    subscription.close()
    reader.close()

    assert offset is not None and offset % timedelta(minutes=1) == timedelta(0), "rebase keeps the grid"
    replayed = {c.close_time: c for c in run_replay([BTC_TAPE]).of("1m")}
    first_live_close = live[0][0]
    compared = 0
    for row in live:
        close = row[0] - offset
        if close <= first_live_close - offset or close > last_full_close:
            continue  # the first minute began before the subscription; the last is incomplete
        c = replayed[close]
        assert row[1:] == (
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.quote_volume,
            c.trade_count,
            c.vwap,
            c.first_trade_id,
            c.last_trade_id,
        ), close
        compared += 1
    assert compared >= 4, f"only {compared} full minutes compared; flow stderr:\n{flow_err[-2000:]}"
    assert late == (0,)
    kinds = {m.payload["kind"] for m in messages}
    assert {"candle", "provisional"} <= kinds, kinds
