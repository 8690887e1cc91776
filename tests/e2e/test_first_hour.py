"""A new user's first hour, through the real entry points and a real headless Chromium.

``python3 tcp.py up --offline`` on a fresh data directory: the dashboard it prints shows candles arriving
live; Ctrl-C stops it with exit 0; the README replay of the XRP-ETH tape runs on the same data directory;
``up --offline`` again keeps the replayed candles, opens them from the instrument selector, and the
simulated market continues (new BTC-USDT candles with trades). And ``python3 tcp.py up`` with no route to
OKX says so in the terminal within seconds, pointing at ``--offline``.

Needs Chromium (``apt-get update && apt-get install -y chromium``); skipped with that hint otherwise.
Screenshots go to docs/images/ (first-hour-offline.png, no-route.png).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import psycopg
import pytest
from playwright.sync_api import Browser, Page
from prometheus_client.parser import text_string_to_metric_families

from app.embedded_postgres import EmbeddedPostgres
from tests.conftest import REPO_ROOT
from tests.dashboards.test_browser import eventually
from tests.support.browser import INSTALL_HINT, chromium, find_chromium, free_port, wait_for_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGES = REPO_ROOT / "docs" / "images"
XRP_TAPE = "tests/data/tapes/XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
CANDLES_SHOWN = 1000  # the chart's default history
COUNT_JS = """name => { for (const doc of window.Bokeh.documents) { const m = doc.get_model_by_name(name);
    if (m) return m.data.time.length; } return null; }"""
NEW_CANDLE_WITHIN = 100.0  # the first full minute closes within about a minute of the start, plus grace


@pytest.fixture
def chromium_path() -> Path:
    path = find_chromium()
    if path is None:
        if os.environ.get("TCP_REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return path


class Up:
    """``python3 tcp.py up ...`` as a user runs it (settings from the environment only), its terminal
    output read line by line."""

    def __init__(self, data_dir: Path, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        environment = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "TCP_CONFIG", "VIRTUAL_ENV", "INSTRUMENTS")
            and not k.startswith("OKX_")
        }
        environment |= {
            "DATA_DIR": str(data_dir),
            "DASHBOARD__HOST": "127.0.0.1",
            "DASHBOARD__PORT": str(port),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "tcp.py", "up", *args],
            cwd=REPO_ROOT,
            env=environment,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line (from here on) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"{pattern!r} not seen within {timeout:.0f} s; output:\n{self.text}")

    @property
    def text(self) -> str:
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a terminal sends it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


def shown_count(page: Page) -> int:
    text = page.get_by_test_id("candle-count").first.inner_text()
    return int(text.removeprefix("Candles: "))


def open_dashboard(browser: Browser, up: Up, port: int) -> Page:
    url = up.wait_for(r"Dashboard: (http://\S+)", timeout=90)[1]
    wait_for_port(port, cast("subprocess.Popen[bytes]", up.process))  # only polled
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_test_id("candle-count").first.wait_for(timeout=30_000)
    return page


def sees_candles_arrive(page: Page) -> int:
    """The chart's candle count (the text and the browser's copy of the source) grows while the page
    stays open, without a reload; returns the new count."""
    before = shown_count(page)

    def grown() -> int:
        now = shown_count(page)
        assert now > before, f"candle count still {now}"
        assert page.evaluate(COUNT_JS, "tcp-candles") == now
        return now

    return int(eventually(grown, NEW_CANDLE_WITHIN))


def one(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def count_candles(url: str, symbol: str) -> int:
    """Stored 1m candles of ``symbol`` with trades."""
    return one(url, "SELECT count(*) FROM candles_1m WHERE symbol = %s AND trade_count > 0", symbol)


def last_trade_id(url: str, symbol: str) -> int:
    return one(url, "SELECT max(trade_id) FROM trades WHERE exchange = 'okx' AND symbol = %s", symbol)


def candles_after(url: str, symbol: str, trade_id: int) -> int:
    """Stored 1m candles of ``symbol`` holding trades newer than ``trade_id``."""
    sql = (
        "SELECT count(*) FROM candles_1m"
        " WHERE exchange = 'okx' AND symbol = %s AND trade_count > 0 AND last_trade_id > %s"
    )
    return one(url, sql, symbol, trade_id)


CONTINUITY = {
    "rejects": "SELECT count(*) FROM rejects",
    "late trades": "SELECT count(*) FROM late_trades",
    "candle conflicts": "SELECT count(*) FROM candle_conflicts",
    "unfilled gaps": "SELECT count(*) FROM gaps WHERE NOT filled",
    "incomplete candles of the second run": "SELECT count(*) FROM candles_1m WHERE NOT complete"
    " AND symbol = 'BTC-USDT' AND exchange = 'okx' AND inserted_at > %(started)s",
    "trade ids missing": "SELECT max(trade_id) - min(trade_id) + 1 - count(*) FROM trades"
    " WHERE symbol = 'BTC-USDT' AND exchange = 'okx'",
    "binance trade ids missing": "SELECT max(trade_id) - min(trade_id) + 1 - count(*) FROM trades"
    " WHERE symbol = 'BTC-USDT' AND exchange = 'binance'",
}


def continuity(url: str, started: datetime) -> dict[str, int]:
    """What the second run of the simulated market left: it continued the first run's market on both
    exchanges, so every gap is filled, each exchange's ids are unbroken, and nothing was refused, late,
    conflicting or partial."""
    found = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, sql in CONTINUITY.items():
            row = conn.execute(sql, {"started": started} if "%(" in sql else None).fetchone()
            assert row is not None
            found[name] = int(row[0])
    return found


def scraped_trades(metrics_url: str, database_url: str) -> None:
    """The flow's /metrics, as ``up`` printed it, counts at least the trades the database had stored
    before the scrape (it counts them as they arrive, before they are written)."""
    stored = one(database_url, "SELECT count(*) FROM trades WHERE exchange = 'okx' AND symbol = 'BTC-USDT'")
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    counted = {
        sample.labels.get("symbol"): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tcp_trades_total" and sample.labels.get("exchange") == "okx"
    }
    assert counted.get("BTC-USDT", 0) >= stored > 0, (counted, stored)


def test_offline_first_hour_in_a_browser(chromium_path: Path, tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    pending: list[str] = []  # checks of behaviour other parts of the system are still to deliver
    IMAGES.mkdir(parents=True, exist_ok=True)
    with chromium(chromium_path) as browser:
        first = Up(data_dir, port, "--offline", env={"METRICS__PORT": str(free_port())})
        try:
            database_url = first.wait_for(r'psql "([^"]+)"', timeout=90)[1]
            page = open_dashboard(browser, first, port)
            assert sees_candles_arrive(page) > 0
            eventually(lambda: count_candles(database_url, "BTC-USDT") > 0, 15)
            scraped_trades(first.wait_for(r"Metrics: (http://\S+)", timeout=5)[1], database_url)
            page.wait_for_timeout(500)
            page.screenshot(path=IMAGES / "first-hour-offline.png", full_page=True)
            assert "Traceback" not in page.content()
            page.close()
        finally:
            code = first.interrupt()
        assert code == 0, first.text

        replay = subprocess.run(
            [sys.executable, "-m", "bytewax.run", "flows.replay"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
                "REPLAY_TAPES": XRP_TAPE,
                "DATA_DIR": str(data_dir),
            },
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        server = EmbeddedPostgres(data_dir / "pg")
        try:
            url = server.start()
            replayed = count_candles(url, "XRP-ETH")
            first_run_last_id = last_trade_id(url, "BTC-USDT")
        finally:
            server.stop()
        assert replayed > 1000

        second = Up(data_dir, port, "--offline")
        try:
            database_url = second.wait_for(r'psql "([^"]+)"', timeout=90)[1]
            second.wait_for(r"BTC-USDT continues the stored market", timeout=30)
            started = datetime.now(UTC)
            page = open_dashboard(browser, second, port)
            # part of the simulated market's continuation: new candles, with trades, in this run
            sees_candles_arrive(page)
            page.wait_for_timeout(500)
            page.screenshot(path=IMAGES / "first-hour-offline.png", full_page=True)
            eventually(lambda: candles_after(database_url, "BTC-USDT", first_run_last_id) > 0, 30)
            expected = dict.fromkeys(CONTINUITY, 0)
            assert continuity(database_url, started) == expected
            kept = count_candles(database_url, "XRP-ETH")
            if kept != replayed:
                pending.append(f"replayed XRP-ETH candles not kept by up: {kept} of {replayed}")
            options = page.locator(".tcp-instrument select option").all_inner_texts()
            if "XRP-ETH" not in options:
                pending.append(f"XRP-ETH not in the instrument selector: {options}")
            else:
                page.locator(".tcp-instrument select").select_option("XRP-ETH")
                try:
                    eventually(lambda: shown_count(page) == min(kept, CANDLES_SHOWN), 20)
                except AssertionError:
                    pending.append(f"XRP-ETH chart shows {shown_count(page)} candles, stored {kept}")
            assert "Traceback" not in page.content()
        finally:
            code = second.interrupt()
        assert code == 0, second.text
    assert not pending, "; ".join(pending)


def test_up_without_a_route_to_okx_says_so_and_points_at_offline(chromium_path: Path, tmp_path: Path) -> None:
    port = free_port()
    no_route = {"OKX_WS_URL": "wss://okx.invalid/ws/v5/public", "OKX_REST_URL": "https://okx.invalid"}
    up = Up(tmp_path / "data", port, env=no_route)
    try:
        with chromium(chromium_path) as browser:
            page = open_dashboard(browser, up, port)
            up.wait_for(r"Up: ", timeout=30)
            said = time.monotonic()
            try:
                up.wait_for(r"python3 tcp\.py up --offline", timeout=15)
            finally:
                page.wait_for_timeout(max(0.0, 8 - (time.monotonic() - said)) * 1000)
                page.screenshot(path=IMAGES / "no-route.png", full_page=True)
            assert re.search(r"(?i)okx", up.text.split("Up: ", 1)[1]), up.text
            page.get_by_text(re.compile("reconnecting")).first.wait_for(timeout=10_000)  # the chart too
            assert "Traceback" not in page.content()
    finally:
        code = up.interrupt()
    assert code == 0, up.text
