"""The dashboard in a real headless Chromium, on a real database filled by the real dataflow and a real
Redis: the chart shows exactly the stored candles, follows the instrument and timeframe selectors, and
receives closed and provisional candles live; the health page renders; no traceback ever reaches it.

Needs Chromium (``apt-get update && apt-get install -y chromium``); skipped with that hint otherwise.
Screenshots go to docs/images/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from playwright.sync_api import Page

from configs.indicators import parse_indicator_config
from connectors.database import DatabaseSink
from connectors.redis_fanout import RedisFanout
from market.provisional import ProvisionalCandle
from market.types import Candle, Signal
from sql import queries
from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.dashboards.collector_table import put_collector
from tests.flows.flowkit import BTC_TAPE, XRP_TAPE, run_replay
from tests.support.browser import INSTALL_HINT, chromium, find_chromium, free_port, serve_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGES = REPO_ROOT / "docs" / "images"
INDICATORS_YAML = """
profiles:
  - instruments: "*"
    timeframes: [1m, 5m, 15m, 1h]
    indicators:
      - {indicator: EMA, label: ema_fast, params: {timeperiod: 9}}
      - {indicator: EMA, label: ema_slow, params: {timeperiod: 21}}
      - {indicator: BBANDS, params: {timeperiod: 20}}
      - {indicator: KELTNER}
      - {indicator: RSI, params: {timeperiod: 14}}
      - {indicator: MACD}
    strategies:
      - {strategy: ema_crossover, params: {fast: 9, slow: 21}}
"""
CANDLES_SHOWN = 1000  # the chart's default history
MINUTE = timedelta(minutes=1)
COUNT_JS = """name => { for (const doc of window.Bokeh.documents) { const m = doc.get_model_by_name(name);
    if (m) return m.data.time.length; } return null; }"""


@pytest.fixture
def chromium_path() -> Path:
    path = find_chromium()
    if path is None:
        if os.environ.get("TCP_REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return path


def serve(tmp_path: Path, database_url: str, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """``panel serve dashboards/app.py`` on a free loopback port, as the run command starts it."""
    config = tmp_path / "indicators.yaml"
    config.write_text(INDICATORS_YAML)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INSTRUMENTS": "XRP-ETH,BTC-USDT",
        "INDICATORS_CONFIG": str(config),
    }
    return serve_dashboard(env, tmp_path / "panel.log")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """``check()`` once it returns something true (or raise the last assertion after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            error: Exception = AssertionError(f"still {result!r}")
        except AssertionError as failed:
            error = failed
        if time.monotonic() > deadline:
            raise error
        time.sleep(0.2)


BROWSER_LEFT = ("tornado.iostream.StreamClosedError", "tornado.websocket.WebSocketClosedError")


def server_tracebacks(log: Path) -> list[str]:
    """The exceptions reported with a traceback in a dashboard server's log, except Tornado's report of
    an update written to a browser that had just closed its websocket (the test's browser leaving
    mid-update, not an error of the dashboard)."""
    found = []
    for block in log.read_text(errors="replace").split("Traceback (most recent call last):\n")[1:]:
        error = next((line for line in block.splitlines() if line and not line.startswith(" ")), "")
        if not error.startswith(BROWSER_LEFT):
            found.append(error)
    return found


def text(page: Page, test_id: str) -> str:
    return page.get_by_test_id(test_id).first.inner_text()


def holds(page: Page, source: str, rows: int) -> Callable[[], bool]:
    """A check for ``eventually``: the browser's copy of a chart source has ``rows`` rows."""

    def check() -> bool:
        assert page.evaluate(COUNT_JS, source) == rows
        return True

    return check


def shows(page: Page, test_id: str, expected: str) -> Callable[[], bool]:
    """A check for ``eventually``: the element's text is ``expected``."""

    def check() -> bool:
        assert text(page, test_id) == expected
        return True

    return check


def expect_series(page: Page, rows: list[dict[str, Any]]) -> None:
    """The chart shows exactly these candles: their count, the last close (exact decimal) and its time."""

    def shown() -> bool:
        assert text(page, "candle-count") == f"Candles: {len(rows)}"
        assert text(page, "last-close") == format(rows[-1]["close"], "f")
        assert text(page, "last-close-time") == rows[-1]["time"].strftime("%Y-%m-%d %H:%M")
        return holds(page, "tcp-candles", len(rows))()  # what the browser holds, not only the server

    eventually(shown)


def test_dashboard_in_a_real_browser(
    chromium_path: Path, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    run_replay(
        [XRP_TAPE, BTC_TAPE],
        database=DatabaseSink(pg_url, tmp_path / "spool"),
        indicators=parse_indicator_config(yaml.safe_load(INDICATORS_YAML)),
    )
    with psycopg.connect(pg_url) as conn:
        stored = {
            (symbol, tf): queries.latest_candles(conn, "okx", symbol, tf, CANDLES_SHOWN)
            for symbol in ("XRP-ETH", "BTC-USDT")
            for tf in ("1m", "5m")
        }
        xrp_signals_5m = queries.recent_signals(conn, "okx", "XRP-ETH", "5m", limit=1000)
    assert (
        len(stored["XRP-ETH", "1m"]) == CANDLES_SHOWN and 100 < len(stored["XRP-ETH", "5m"]) < CANDLES_SHOWN
    )
    process, url = serve(tmp_path, pg_url, redis_url)
    IMAGES.mkdir(parents=True, exist_ok=True)
    try:
        with chromium(chromium_path) as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1150})
            page.goto(url)
            expect_series(page, stored["XRP-ETH", "1m"])  # the first instrument, 1m, by default
            assert "Traceback" not in page.content()

            page.locator(".tcp-timeframe").get_by_role("button", name="5m", exact=True).click()
            expect_series(page, stored["XRP-ETH", "5m"])
            signals_shown = [s for s in xrp_signals_5m if s["time"] >= stored["XRP-ETH", "5m"][0]["time"]]
            assert text(page, "signal-count") == f"Signals: {len(signals_shown)}" and signals_shown
            page.wait_for_timeout(500)
            page.screenshot(path=IMAGES / "dashboard-chart.png", full_page=True)

            page.locator(".tcp-instrument select").select_option("BTC-USDT")
            expect_series(page, stored["BTC-USDT", "5m"])
            page.locator(".tcp-timeframe").get_by_role("button", name="1m", exact=True).click()
            btc = stored["BTC-USDT", "1m"]
            expect_series(page, btc)

            live_checks(page, RedisFanout(redis_url), btc)

            now = datetime.now(UTC)
            put_collector(
                pg_url,
                "okx",
                "running",
                now,
                now - timedelta(minutes=10),
                messages_received=1200,
                messages_processed=1200,
                uptime_seconds=600.0,
                reconnect_attempts=1,
                last_message_time=now,
            )
            page.locator(".bk-tab", has_text="Health").click()
            eventually(lambda: text(page, "db-status").startswith("Database: ok"))
            assert text(page, "redis-status").startswith("Redis: ok")

            def collector_shown() -> str:
                shown = page.locator(".tcp-collectors table").inner_text()
                assert "okx" in shown
                return shown

            collectors = eventually(collector_shown)
            assert (
                "okx" in collectors and "running" in collectors and "2.0" in collectors
            )  # 1200 msgs / 600 s
            page.screenshot(path=IMAGES / "dashboard-health.png", full_page=True)
            assert "Traceback" not in page.content()
    finally:
        stop(process)
    assert server_tracebacks(tmp_path / "panel.log") == []


def candle(prev: Decimal, close_time: datetime, close: Decimal) -> dict[str, Any]:
    low, high = min(prev, close), max(prev, close)
    return {
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "timeframe": "1m",
        "open_time": close_time - MINUTE,
        "close_time": close_time,
        "open": prev,
        "high": high + 1,
        "low": low - 1,
        "close": close,
        "volume": Decimal("1.5"),
        "quote_volume": close * Decimal("1.5"),
        "trade_count": 7,
        "vwap": close,
    }


def live_checks(page: Page, fanout: RedisFanout, rows: list[dict[str, Any]]) -> None:
    """Closed and provisional candles published to Redis arrive on the page without a reload."""
    last_close, t1 = rows[-1]["close"], rows[-1]["time"] + MINUTE
    signals_before = int(text(page, "signal-count").removeprefix("Signals: "))
    fanout.publish([Candle(**candle(last_close, t1, Decimal("61999.9")), first_trade_id=1, last_trade_id=7)])
    expect_series(page, [*rows, {"time": t1, "close": Decimal("61999.9")}])

    for seconds, close in ((20, Decimal("62100.5")), (40, Decimal("62150.25"))):  # the live candle moves
        fanout.publish(
            [
                ProvisionalCandle(
                    **candle(Decimal("61999.9"), t1 + MINUTE, close), as_of=t1 + timedelta(seconds=seconds)
                )
            ]
        )
        eventually(shows(page, "provisional-close", format(close, "f")))
        eventually(holds(page, "tcp-provisional", 1))
        assert text(page, "candle-count") == f"Candles: {len(rows) + 1}"  # provisional is not a candle yet
    fanout.publish(
        [
            Signal(
                "okx",
                "BTC-USDT",
                "1m",
                t1,
                "ema_crossover",
                "buy",
                "ema_fast crossed above ema_slow",
                {"fast": 62000.0, "slow": 61990.0},
            )
        ]
    )
    eventually(shows(page, "signal-count", f"Signals: {signals_before + 1}"))
    page.wait_for_timeout(300)
    page.screenshot(path=IMAGES / "dashboard-live.png", full_page=True)

    final = Decimal("62140")
    fanout.publish(
        [Candle(**candle(Decimal("61999.9"), t1 + MINUTE, final), first_trade_id=8, last_trade_id=20)]
    )
    expect_series(page, [*rows, {}, {"time": t1 + MINUTE, "close": final}])
    eventually(shows(page, "provisional", "none"))
    eventually(holds(page, "tcp-provisional", 0))


def test_servers_down_show_messages_not_tracebacks(chromium_path: Path, tmp_path: Path) -> None:
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    process, url = serve(tmp_path, dead_db, f"unix://{tmp_path}/no-redis.sock")
    try:
        with chromium(chromium_path) as browser:
            page = browser.new_page()
            page.goto(url)
            page.locator(
                "p", has_text="The database is unreachable; history and health counts"
            ).first.wait_for()
            assert text(page, "candle-count") == "Candles: 0"
            page.locator("text=Collector status unknown while the database does not answer.").wait_for()
            page.screenshot(path=IMAGES / "dashboard-database-down.png")
            page.locator(".bk-tab", has_text="Health").click()
            eventually(lambda: text(page, "db-status").startswith("Database: unavailable"))
            assert text(page, "redis-status").startswith("Redis: unavailable: Redis is unreachable")
            assert "Traceback" not in page.content()
    finally:
        stop(process)
    assert server_tracebacks(tmp_path / "panel.log") == []
