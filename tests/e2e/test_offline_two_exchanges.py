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
from playwright.sync_api import Page

from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.dashboards.test_browser import eventually
from tests.e2e.test_json_logs import environment
from tests.support.browser import INSTALL_HINT, chromium, find_chromium, free_port

pytestmark = pytest.mark.slow

SEEN = "SELECT exchange, count(*), max(trade_id) FROM trades GROUP BY exchange"
CANDLES = "SELECT DISTINCT exchange FROM candles_1m WHERE trade_count > 0"
BINANCE_CANDLES = "SELECT count(*) FROM candles_1m WHERE exchange = 'binance' AND symbol = 'BTC-USDT'"
MISSING = "SELECT exchange, max(trade_id) - min(trade_id) + 1 - count(*) FROM trades GROUP BY exchange"


def run_up(tmp_path: Path, pg_url: str, redis_url: str, port: int) -> subprocess.Popen[str]:
    env = environment(tmp_path, DATABASE_URL=pg_url, REDIS_URL=redis_url, DASHBOARD__PORT=str(port))
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


def shown_count(page: Page) -> int:
    return int(page.get_by_test_id("candle-count").first.inner_text().removeprefix("Candles: "))


def wait_for_candles_of_both(pg_url: str, up: subprocess.Popen[str]) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        deadline = time.monotonic() + 240  # the first full minute closes within two minutes
        while True:
            assert up.poll() is None, up.communicate()
            candles = {row[0] for row in conn.execute(CANDLES).fetchall()}
            if candles == {"okx", "binance"}:
                return
            assert time.monotonic() < deadline, f"candles of {candles} only"
            time.sleep(2)


@pytest.mark.browser
def test_the_dashboard_lists_both_exchanges_series(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    """In a browser, the instrument selector of ``up --offline``'s dashboard offers OKX's BTC-USDT and
    Binance's (``binance:BTC-USDT``)."""
    path = find_chromium()
    if path is None:
        if os.environ.get("TCP_REQUIRE_BROWSER"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    migrate(pg_url)
    port = free_port()
    up = run_up(tmp_path, pg_url, redis_url, port)
    try:
        wait_for_candles_of_both(pg_url, up)
        with chromium(path) as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/app")
            page.locator(".tcp-instrument select option").first.wait_for(state="attached", timeout=30_000)
            options = page.locator(".tcp-instrument select option").all_inner_texts()
            assert {"BTC-USDT", "binance:BTC-USDT"} <= set(options), options
            page.locator(".tcp-instrument select").select_option("binance:BTC-USDT")
            with psycopg.connect(pg_url, autocommit=True) as conn:
                stored = conn.execute(BINANCE_CANDLES).fetchone()
            assert stored is not None and stored[0] > 0
            eventually(lambda: shown_count(page) >= stored[0], 30)  # Binance's own candles, not OKX's
            assert "Traceback" not in page.content()
    finally:
        interrupt(up)


def test_up_offline_follows_okx_and_binance_and_continues_both(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    port = free_port()
    up = run_up(tmp_path, pg_url, redis_url, port)
    try:
        wait_for_candles_of_both(pg_url, up)
    finally:
        out = interrupt(up)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # where the stored markets end
        first = {exchange: (count, last) for exchange, count, last in conn.execute(SEEN).fetchall()}
    assert "Offline: OKX simulator at" in out and "Offline: Binance simulator at" in out
    assert set(first) == {"okx", "binance"}

    again = run_up(tmp_path, pg_url, redis_url, free_port())
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
