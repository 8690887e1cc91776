"""``python3 tcp.py up`` keeps its services running: a SIGKILLed flow is back within seconds on its own and
the stored data are as an uninterrupted run leaves them; a flow that crashes at start is a crash loop,
reported and not restarted forever, while the rest keeps running and Ctrl-C still stops it with 0.

The oracle is independent of the flow: the simulator's tape has consecutive trade ids, so an unbroken id
sequence in ``trades`` means no trade was lost, and every stored candle is recomputed from the stored
trades in SQL (first and last by trade id, extremes, sums, count) and every minute between the first and
the last candle must be there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.dashboards.test_browser import eventually
from tests.e2e.test_first_hour import Up, one
from tests.support.browser import free_port

pytestmark = [pytest.mark.slow]

RECOMPUTED = """
WITH t AS (
    SELECT symbol, date_trunc('minute', time) + interval '1 minute' AS close_time, trade_id, price, size
    FROM trades WHERE exchange = %(exchange)s AND symbol = 'BTC-USDT'
), agg AS (
    SELECT symbol, close_time,
           (array_agg(price ORDER BY trade_id))[1] AS open, max(price) AS high, min(price) AS low,
           (array_agg(price ORDER BY trade_id DESC))[1] AS close, sum(size) AS volume, count(*) AS n
    FROM t GROUP BY symbol, close_time
)
SELECT count(*) FROM candles_1m c LEFT JOIN agg a ON a.symbol = c.symbol AND a.close_time = c.time
WHERE c.exchange = %(exchange)s AND c.symbol = 'BTC-USDT' AND c.trade_count > 0
  AND c.time <= (SELECT max(time) FROM candles_1m WHERE exchange = %(exchange)s)
  AND (a.n IS NULL OR (c.open, c.high, c.low, c.close, c.volume, c.trade_count)
                      IS DISTINCT FROM (a.open, a.high, a.low, a.close, a.volume, a.n::int))
"""
MINUTES_MISSING = """
SELECT (extract(epoch FROM max(time) - min(time)) / 60)::int + 1 - count(*) FROM candles_1m
WHERE exchange = %(exchange)s AND symbol = 'BTC-USDT'
"""
IDS_MISSING = "SELECT max(trade_id) - min(trade_id) + 1 - count(*) FROM trades WHERE exchange = %(exchange)s"
EXCHANGES = ("okx", "binance")
"""up --offline follows BTC-USDT on both simulated exchanges: each is checked on its own."""


def of_exchange(url: str, sql: str, exchange: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, {"exchange": exchange}).fetchone()
    assert row is not None
    return int(row[0])


def flow_pid(up: Up) -> int:
    return int(up.wait_for(r"started flow \(pid (\d+)\)", timeout=120)[1])


def test_a_killed_flow_is_back_within_seconds_and_the_candles_are_exact(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", free_port(), "--offline")
    try:
        url = up.wait_for(r'psql "([^"]+)"', timeout=120)[1]
        pid = flow_pid(up)
        eventually(lambda: one(url, "SELECT count(*) FROM trades WHERE exchange = 'okx'") > 0, 60)
        killed_after = one(url, "SELECT max(trade_id) FROM trades WHERE exchange = 'okx'")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        up.wait_for(r"flow exited with code -9 .*restarting in \d", timeout=10)
        assert flow_pid(up) != pid
        back = time.monotonic() - killed
        assert back < 10, f"the flow took {back:.1f} s to come back"
        # A candle closed by the restarted flow, with trades after the kill.
        sql = (
            "SELECT count(*) FROM candles_1m"
            " WHERE exchange = 'okx' AND trade_count > 0 AND last_trade_id > %s"
        )
        eventually(lambda: one(url, sql, killed_after) > 0, 100)
        with psycopg.connect(url) as conn:
            restarts = conn.execute(
                "SELECT payload->>'restarts' FROM collector_health WHERE collector = 'service:flow'"
            ).fetchone()
        assert restarts == ("1",)
        # The restarted flow reports it in its own collectors' health too.
        flow_restarts = (
            "SELECT min((payload->>'restarts')::int) FROM collector_health WHERE collector LIKE 'okx:%%'"
        )
        eventually(lambda: one(url, flow_restarts) == 1, 15)
        binance = "SELECT count(*) FROM candles_1m WHERE exchange = 'binance' AND trade_count > 0"
        eventually(lambda: one(url, binance) > 0, 100)  # its flow was killed and restarted as well
        for exchange in EXCHANGES:
            found = [of_exchange(url, q, exchange) for q in (IDS_MISSING, RECOMPUTED, MINUTES_MISSING)]
            assert found == [0, 0, 0], exchange
        assert one(url, "SELECT count(*) FROM candle_conflicts") == 0
        assert one(url, "SELECT count(*) FROM rejects") == 0
    finally:
        code = up.interrupt()
    assert code == 0, up.text
    assert "Traceback" not in up.text


def test_a_flow_crashing_at_start_is_a_crash_loop_not_restarted_forever(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "spool").write_text("not a directory")  # the flow cannot keep its outage spool: it exits
    env = {"SUPERVISOR__RESTART_INITIAL": "0.2", "SUPERVISOR__CRASH_LOOP_EXITS": "3"}
    up = Up(data, free_port(), "--offline", env=env)
    try:
        url = up.wait_for(r'psql "([^"]+)"', timeout=120)[1]
        loop = up.wait_for(r"flow: crash loop: 3 exits within 120 s", timeout=90)
        assert "Fix the cause and run `python3 tcp.py up` again." in loop.string
        time.sleep(3)  # no further start
        assert len(re.findall(r"started flow \(pid", up.text)) == 3
        with psycopg.connect(url) as conn:
            status, error = conn.execute(
                "SELECT status, last_error FROM collector_health WHERE collector = 'service:flow'"
            ).fetchone()  # type: ignore[misc]
            dashboard = conn.execute(
                "SELECT status FROM collector_health WHERE collector = 'service:dashboard'"
            ).fetchone()
        assert status == "error" and error.startswith("crash loop: 3 exits")
        assert "Error" in error  # the flow's own last error line
        assert dashboard == ("running",)  # the rest keeps running
        assert up.process.poll() is None
    finally:
        code = up.interrupt()
    assert code == 0, up.text


def test_ctrl_c_landing_inside_a_database_write_still_stops_everything(tmp_path: Path) -> None:
    """The supervisor's health write is held on a table lock (a real one, from another session) when
    Ctrl-C arrives; once the lock goes, ``up`` stops with 0 rather than carrying on."""
    up = Up(tmp_path / "data", free_port())
    try:
        url = up.wait_for(r'psql "([^"]+)"', timeout=120)[1]
        up.wait_for(r"^Up: ", timeout=60)
        with psycopg.connect(url) as lock:
            lock.execute("LOCK TABLE collector_health IN ACCESS EXCLUSIVE MODE")
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%collector_health%%'"
            )
            eventually(lambda: one(url, waiting) > 0, 30)
            time.sleep(2.5)  # the supervisor writes every 2 s: it is waiting too by now
            up.process.send_signal(signal.SIGINT)
            time.sleep(1)
            assert up.process.poll() is None  # still held
            lock.rollback()
        try:
            code = up.process.wait(40)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up did not stop on Ctrl-C once the lock was gone; output:\n{up.text}")
        assert code == 0, up.text
        assert "SIGINT: stopping" in up.text
    finally:
        up.interrupt()
