"""The dashboard's states in a real headless Chromium: on the database alone (no ``REDIS_URL``), with empty
series explained by the collector status, a stale snapshot shown as not reporting, the instrument list
from the database, the in-progress 5m candle from stored 1m candles, tick labels without scientific
notation; and live updates that stop when Redis stops and resume, without a reload, when it returns.

Two dashboards are served (one without Redis, one with a real embedded Redis), started together and
shared by the tests of this module, over one database filled by the replay of the XRP-ETH tape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import yaml
from playwright.sync_api import Browser

from app.embedded_redis import EmbeddedRedis
from configs.indicators import parse_indicator_config
from connectors.database import DatabaseSink
from connectors.redis_fanout import RedisFanout
from market.provisional import ProvisionalCandle
from market.timeframes import TIMEFRAMES
from market.types import Candle
from sql import queries
from sql.migrate import migrate
from tests.conftest import fresh_database
from tests.dashboards.collector_table import put_collector
from tests.dashboards.test_browser import (
    IMAGES,
    INDICATORS_YAML,
    eventually,
    expect_series,
    holds,
    server_tracebacks,
    stop,
    text,
)
from tests.flows.flowkit import XRP_TAPE, run_replay
from tests.support.browser import INSTALL_HINT, chromium, find_chromium, serve_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MINUTE, SECOND = timedelta(minutes=1), timedelta(seconds=1)
ERROR = "gaierror: [Errno -2] Name or service not known"
FORMATS_JS = """() => { for (const doc of window.Bokeh.documents) {
    const named = name => [...doc.all_models].filter(m => m.name === name);
    const volume = named("tcp-volume-ticks"), price = named("tcp-price-ticks"), figs = named("tcp-price");
    if (volume.length && price.length && figs.length) return {
        volume: volume.map(f => f.doFormat([0, 950, 20000, 140000, 1400000], {loc: 0})),
        price: price.map(f => f.doFormat([0.0014, 0.00145, 0.0015], {loc: 0})),
        big: price.map(f => f.doFormat([60000, 140000, 62150.5], {loc: 0})),
        legend_above: figs.every(f => f.above.some(m => m.click_policy === "hide")),
        legend_inside: figs.some(f => f.center.some(m => m.click_policy !== undefined)),
    }; } return null; }"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = find_chromium()
    if path is None:
        if os.environ.get("TCP_REQUIRE_BROWSER"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    with chromium(path) as running:
        yield running


@pytest.fixture(scope="module")
def stored(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding the XRP-ETH tape's replay."""
    with fresh_database(pg_server) as url:
        migrate(url)
        indicators = parse_indicator_config(yaml.safe_load(INDICATORS_YAML))
        run_replay(
            [XRP_TAPE], database=DatabaseSink(url, tmp_path_factory.mktemp("spool")), indicators=indicators
        )
        yield url


@pytest.fixture(scope="module")
def served(stored: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two dashboards over ``stored``: ``alone`` without REDIS_URL, ``live`` following an embedded Redis."""
    tmp = tmp_path_factory.mktemp("served")
    config = tmp / "indicators.yaml"
    config.write_text(INDICATORS_YAML)
    redis = EmbeddedRedis(tmp / "redis")
    redis_url = redis.start()
    base = {"DATABASE_URL": stored, "INDICATORS_CONFIG": str(config)}
    inherited = os.environ.pop("REDIS_URL", None)  # the first dashboard must not inherit one
    try:
        alone, alone_url = serve_dashboard({**base, "INSTRUMENTS": "BTC-USDT,ETH-USDT"}, tmp / "alone.log")
        live, live_url = serve_dashboard(
            {**base, "REDIS_URL": redis_url, "INSTRUMENTS": "XRP-ETH"}, tmp / "live.log"
        )
    finally:
        if inherited is not None:
            os.environ["REDIS_URL"] = inherited
    try:
        yield {
            "alone": alone_url,
            "live": live_url,
            "redis": redis,
            "redis_url": redis_url,
            "db": stored,
            "tmp": tmp,
        }
    finally:
        stop(alone)
        stop(live)
        redis.stop()
    for log in ("alone.log", "live.log"):
        assert server_tracebacks(tmp / log) == []


def latest(url: str, symbol: str, timeframe: str, limit: int = 1000) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return queries.latest_candles(conn, "okx", symbol, timeframe, limit)


def test_on_the_database_alone(browser: Browser, served: dict[str, Any]) -> None:
    db, now = served["db"], datetime.now(UTC)
    put_collector(db, "okx:public-0", "reconnecting", now, now - 2 * MINUTE, ERROR, reconnect_attempts=4)
    put_collector(db, "okx:public-1", "running", now - timedelta(seconds=45), now - timedelta(hours=1))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served["alone"])
    since = f"reconnecting since {now - 2 * MINUTE:%H:%M:%S} UTC: {ERROR}"
    # The configured instrument first; it has no candle: the page says why, from the collector status.
    eventually(lambda: text(page, "empty-state").startswith("No candles yet for BTC-USDT 1m."))
    assert text(page, "empty-state") == (
        f"No candles yet for BTC-USDT 1m. The OKX collector (okx:public-0) is {since}. It keeps retrying; "
        "python3 tcp.py up --offline runs against the bundled simulator."
    )
    assert text(page, "live-status") == "Live: live updates off (REDIS_URL is not set)"
    stale = f"not reporting (last seen {now - timedelta(seconds=45):%H:%M:%S} UTC)"
    chart_says = f"Collector okx:public-0: {since}; Collector okx:public-1: {stale}."
    assert text(page, "collector-status") == chart_says
    page.screenshot(path=served["tmp"] / "dashboard-no-candles.png")

    # The instrument list: the configured ones, then what the database holds.
    options = page.locator(".tcp-instrument select option").all_inner_texts()
    assert options == ["BTC-USDT", "ETH-USDT", "XRP-ETH"]
    page.locator(".tcp-instrument select").select_option("XRP-ETH")
    expect_series(page, latest(db, "XRP-ETH", "1m"))
    assert not page.get_by_test_id("empty-state").is_visible()
    formats = eventually(lambda: page.evaluate(FORMATS_JS))
    assert all(labels == ["0", "950", "20k", "140k", "1.4m"] for labels in formats["volume"])
    assert all(labels == ["0.0014", "0.00145", "0.0015"] for labels in formats["price"])
    assert not any("e" in label for labels in formats["price"] + formats["big"] for label in labels)
    assert formats["legend_above"] and not formats["legend_inside"]  # never over the newest candles

    # 5m: the stored candles, and the interval still open drawn from its stored 1m candles.
    page.locator(".tcp-timeframe").get_by_role("button", name="5m", exact=True).click()
    expect_series(page, latest(db, "XRP-ETH", "5m"))
    minutes = latest(db, "XRP-ETH", "1m", 5)
    eventually(holds(page, "tcp-provisional", 1))
    assert text(page, "provisional-close") == format(minutes[-1]["close"], "f")
    assert "from its 1m candles" in text(page, "provisional")
    page.screenshot(path=IMAGES / "dashboard-database-only.png")

    # Still current (snapshots expire after 30 s): the flow would have upserted it again by now.
    put_collector(db, "okx:public-0", "reconnecting", datetime.now(UTC), now - 2 * MINUTE, ERROR)
    page.locator(".bk-tab", has_text="Health").click()
    eventually(lambda: text(page, "db-status").startswith("Database: ok"))
    assert text(page, "redis-status") == "Redis: not configured (REDIS_URL is not set); live updates off"
    assert text(page, "collector-summary") == chart_says  # the same state and cause as the chart
    table = page.locator(".tcp-collectors table").inner_text()
    assert stale in table and ERROR in table
    page.screenshot(path=served["tmp"] / "dashboard-health-database-only.png", full_page=True)
    assert "Traceback" not in page.content()
    page.close()


def minute_candle(close_time: datetime, close: Decimal) -> Candle:
    return Candle(
        "okx", "XRP-ETH", "1m", close_time - MINUTE, close_time, close, close, close, close,
        Decimal(5), close * 5, 1, close, 1, 1,
    )  # fmt: skip


def test_live_updates_stop_with_redis_and_resume_without_a_reload(
    browser: Browser, served: dict[str, Any]
) -> None:
    rows = latest(served["db"], "XRP-ETH", "1m")
    page = browser.new_page()
    page.goto(served["live"])
    expect_series(page, rows)
    eventually(lambda: text(page, "live-status") == "Live: following Redis")
    served["redis"].stop()
    eventually(lambda: text(page, "live-status").startswith("Live: live updates off (Redis is unreachable"))
    assert served["redis"].start() == served["redis_url"]
    eventually(lambda: text(page, "live-status") == "Live: following Redis", timeout=30)
    t1 = rows[-1]["time"] + MINUTE

    def arrives() -> bool:  # published until seen: the hub may still be resubscribing
        RedisFanout(served["redis_url"]).publish([minute_candle(t1, Decimal("0.0016"))])
        return text(page, "candle-count") == f"Candles: {len(rows) + 1}"

    eventually(arrives, timeout=20)
    expect_series(page, [*rows, {"time": t1, "close": Decimal("0.0016")}])

    # 5m: the flow publishes provisional candles of 1m only; the in-progress 5m candle is made from them.
    page.locator(".tcp-timeframe").get_by_role("button", name="5m", exact=True).click()
    expect_series(page, latest(served["db"], "XRP-ETH", "5m"))
    close, t2 = Decimal("0.00161"), t1 + MINUTE
    as_of = t1 + 30 * SECOND
    provisional = ProvisionalCandle(
        "okx", "XRP-ETH", "1m", t1, t2, close, close, close, close, Decimal(2), close * 2, 1, close, as_of
    )  # fmt: skip
    RedisFanout(served["redis_url"]).publish([provisional])
    eventually(lambda: text(page, "provisional-close") == "0.00161")
    closes = TIMEFRAMES["5m"].close_of(t1)
    expected = f"closes {closes:%H:%M} UTC, as of {as_of:%H:%M:%S} UTC, from its 1m candles)"
    assert text(page, "provisional").endswith(expected)
    eventually(holds(page, "tcp-provisional", 1))
    assert "Traceback" not in page.content()
    page.close()
