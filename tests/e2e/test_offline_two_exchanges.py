"""``up --offline`` follows OKX and Binance together: the OKX simulator and the Binance simulator replay
the demo tape (real Binance BTC-USDT trades, tests/data/SOURCES.md) from now, the live flow stores rows
of both exchanges, and a second ``up --offline`` continues each stored market (ids after the stored
ones) instead of replaying ids already stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.e2e.test_json_logs import environment
from tests.support.browser import free_port

pytestmark = pytest.mark.slow

SEEN = "SELECT exchange, count(*), max(trade_id) FROM trades GROUP BY exchange"
CANDLES = "SELECT DISTINCT exchange FROM candles_1m WHERE trade_count > 0"
MISSING = "SELECT exchange, max(trade_id) - min(trade_id) + 1 - count(*) FROM trades GROUP BY exchange"


def run_up(tmp_path: Path, pg_url: str, redis_url: str) -> subprocess.Popen[str]:
    env = environment(tmp_path, DATABASE_URL=pg_url, REDIS_URL=redis_url, DASHBOARD__PORT=str(free_port()))
    return subprocess.Popen(
        [sys.executable, "-m", "app.stack", "up", "--offline"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def interrupt(up: subprocess.Popen[str]) -> str:
    os.killpg(up.pid, signal.SIGINT)
    out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    return out


def test_up_offline_follows_okx_and_binance_and_continues_both(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    up = run_up(tmp_path, pg_url, redis_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 240  # the first full minute closes within two minutes
            while True:
                assert up.poll() is None, up.communicate()
                candles = {row[0] for row in conn.execute(CANDLES).fetchall()}
                if candles == {"okx", "binance"}:
                    break
                assert time.monotonic() < deadline, f"candles of {candles} only"
                time.sleep(2)
    finally:
        out = interrupt(up)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # where the stored markets end
        first = {exchange: (count, last) for exchange, count, last in conn.execute(SEEN).fetchall()}
    assert "Offline: OKX simulator at" in out and "Offline: Binance simulator at" in out
    assert set(first) == {"okx", "binance"}

    again = run_up(tmp_path, pg_url, redis_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while True:
                assert again.poll() is None, again.communicate()
                now = {exchange: last for exchange, _, last in conn.execute(SEEN).fetchall()}
                if all(now[exchange] > first[exchange][1] for exchange in first):
                    break
                assert time.monotonic() < deadline, f"stored ends {first}, now {now}"
                time.sleep(1)
    finally:
        out = interrupt(again)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # each exchange's ids unbroken across both runs
        assert dict(conn.execute(MISSING).fetchall()) == {"okx": 0, "binance": 0}
    assert "Offline: binance:BTC-USDT continues the stored market" in out
    assert "Offline: BTC-USDT continues the stored market" in out
