"""End to end, all real: the OKX simulator and the Binance simulator replay the same BTC-USDT tape (real
Binance trades, tests/data/SOURCES.md) rebased to now, the live flow (``python -m bytewax.run
flows.okx``) follows ``okx:BTC-USDT,binance:BTC-USDT`` into PostgreSQL, and each exchange's stored
candles equal those of ``flows.replay`` on the tape (shifted by its rebase): the same symbol with the
same trade ids on two exchanges is two series, neither shadowing the other."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from sql.migrate import migrate
from tests.e2e.test_live_flow import start, stop
from tests.flows.flowkit import BTC_TAPE, ms, run_replay
from tests.support.tapes import tape_rows

pytestmark = pytest.mark.slow

SPEED = 6
ROWS = tape_rows(BTC_TAPE)
TAPE_TIME = {int(r["trade_id"]): ms(r["created_time"]) for r in ROWS}
LAST_FULL_CLOSE = ms(ROWS[-1]["created_time"]).replace(second=0, microsecond=0)
CANDLE = "time, open, high, low, close, volume, trade_count, first_trade_id, last_trade_id"


def offset_of(conn: psycopg.Connection, exchange: str) -> timedelta | None:
    """How far the simulator shifted the tape: a stored trade's time minus its tape time."""
    row = conn.execute(
        "SELECT trade_id, time FROM trades WHERE exchange = %s LIMIT 1", (exchange,)
    ).fetchone()
    return None if row is None else row[1] - TAPE_TIME[row[0]]


def done(conn: psycopg.Connection, offsets: dict[str, timedelta | None]) -> bool:
    for exchange in offsets:
        offsets[exchange] = offsets[exchange] or offset_of(conn, exchange)
    return all(
        offset is not None
        and conn.execute(
            "SELECT 1 FROM candles_1m WHERE exchange = %s AND time >= %s",
            (exchange, LAST_FULL_CLOSE + offset),
        ).fetchone()
        for exchange, offset in offsets.items()
    )


def test_okx_and_binance_in_one_live_flow(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    okx_sim = start(
        [sys.executable, "-m", "connectors.okx.simulator", "--tape", str(BTC_TAPE), "--rebase-now"]
        + ["--start-offset", "240", "--speed", str(SPEED)]
    )
    binance_sim = start(
        [sys.executable, "-m", "connectors.binance.simulator", "--tape", str(BTC_TAPE), "--rebase-now"]
        + ["--speed", str(SPEED)]
    )
    assert okx_sim.stdout is not None and binance_sim.stdout is not None
    okx, binance = json.loads(okx_sim.stdout.readline()), json.loads(binance_sim.stdout.readline())
    flow = start(
        [sys.executable, "-m", "bytewax.run", "flows.okx"],
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "OKX_WS_URL": okx["ws_public"],
            "OKX_REST_URL": okx["rest"],
            "BINANCE_WS_URL": binance["ws"],
            "BINANCE_REST_URL": binance["rest"],
            "INSTRUMENTS": "okx:BTC-USDT,binance:BTC-USDT",
            "CANDLE_GRACE": "6",
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "WARNING",
            "FEED__FUTURE_TOLERANCE": "3600",  # at 6x the tape's times run ahead of the receive clock
        },
    )
    offsets: dict[str, timedelta | None] = {"okx": None, "binance": None}
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 665 / SPEED + 120
            while not done(conn, offsets):
                assert flow.poll() is None, f"the flow exited: {stop(flow)}"
                assert time.monotonic() < deadline, (
                    f"not every exchange's last full minute was stored: {offsets}"
                )
                time.sleep(1)
            stored = {
                exchange: conn.execute(
                    f"SELECT {CANDLE} FROM candles_1m WHERE exchange = %s AND symbol = 'BTC-USDT'"
                    " ORDER BY time",
                    (exchange,),
                ).fetchall()
                for exchange in offsets
            }
            exchanges = {r[0] for r in conn.execute("SELECT DISTINCT exchange FROM trades").fetchall()}
            per_exchange: dict[str, int] = dict(
                conn.execute("SELECT exchange, count(*) FROM trades GROUP BY exchange").fetchall()
            )
    finally:
        stop(flow)
        stop(okx_sim)
        stop(binance_sim)
    assert exchanges == {"okx", "binance"}
    replayed = {c.close_time: c for c in run_replay([BTC_TAPE]).of("1m")}
    for exchange, rows in stored.items():
        offset = offsets[exchange]
        assert offset is not None and offset % timedelta(minutes=1) == timedelta(0), "rebase keeps the grid"
        compared = 0
        for row in rows[1:]:  # the first minute began before the subscription
            close: datetime = row[0] - offset
            if close > LAST_FULL_CLOSE:
                continue
            c = replayed[close]
            expected = (
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                c.trade_count,
                c.first_trade_id,
                c.last_trade_id,
            )
            assert row[1:] == expected, (exchange, close)
            compared += 1
        assert compared >= 3, (exchange, compared)
    # both exchanges stored the same trade ids: nothing was dropped as the other's duplicate
    assert per_exchange["okx"] > 1000 and per_exchange["binance"] > 1000
