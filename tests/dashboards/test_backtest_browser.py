"""Backtests in a real browser (headless Chromium): the standalone report opened offline from its file,
and the dashboard's Backtests page over two stored runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from playwright.sync_api import Page, Route

from dashboards.backtest_report import BacktestView, write_report
from sql.migrate import migrate
from tests.dashboards.backtest_kit import store_candles, store_run
from tests.dashboards.test_browser import IMAGES, chromium_path, eventually, server_tracebacks, stop
from tests.support.browser import chromium, serve_dashboard

__all__ = ["chromium_path"]  # the fixture, used by name

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RENDERED_JS = """() => { const found = {}; if (!window.Bokeh || !Bokeh.index) return found;
    for (const v of Bokeh.index.all_views()) { const n = v.model.name; if (!n || !v.bbox) continue;
      if (n.startsWith("tcp-bt-")) found[n] = (found[n] || []).concat([[v.bbox.width, v.bbox.height]]); }
    return found; }"""
ROWS_JS = """name => { const rows = []; for (const doc of Bokeh.documents)
    for (const m of doc._all_models.values())
      if (m.name === name && m.data) rows.push(Object.values(m.data)[0].length);
    return rows; }"""
DRAWN_TRADES_JS = """() => [...Bokeh.index.all_views()].filter(v => v.model.name === "tcp-bt-entries")
    .map(v => v.model.data_source.data.pnl.length)"""
TOOLTIPS_JS = """() => { const tips = []; for (const doc of Bokeh.documents)
    for (const m of doc._all_models.values()) if (m.type === "HoverTool" && Array.isArray(m.tooltips))
      tips.push(m.tooltips.map(t => t[0])); return tips; }"""


def sample_view(n: int = 2000) -> BacktestView:
    rng = np.random.default_rng(3)
    times = pd.date_range(datetime(2026, 1, 31, 12, 1, tzinfo=UTC), periods=n, freq="1min")
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    opens = np.r_[100.0, closes[:-1]]
    candles = pd.DataFrame(
        {"time": times, "open": opens, "high": np.maximum(opens, closes), "low": np.minimum(opens, closes),
         "close": closes, "volume": 1.0}
    )  # fmt: skip
    equity = pd.DataFrame(
        {"time": times, "close": closes, "cash": 0.0, "position": 100.0, "equity": 100.0 * closes}
    )
    fill = times[99].isoformat()
    trades = [
        {"entry_time": times[9].isoformat(), "entry_price": float(opens[10]), "exit_time": fill,
         "exit_price": float(opens[100]), "quantity": 99.0, "pnl": 1.5, "fees": 2.0, "side": "long",
         "open": False},
        {"entry_time": times[499].isoformat(), "entry_price": float(opens[500]), "exit_time": None,
         "exit_price": None, "quantity": 98.0, "pnl": -3.0, "fees": 1.0, "side": "long", "open": True},
    ]  # fmt: skip
    metrics = {"start_equity": 10_000.0, "final_equity": float(equity["equity"].iloc[-1]), "trades": 1}
    return BacktestView("ema_crossover on okx BTC-USDT 1m", candles, equity, trades, metrics, {"fast": 9})


def test_report_opens_offline_and_shows_its_plots(chromium_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.html"
    write_report(path, sample_view())
    errors: list[str] = []
    fetched: list[str] = []

    def offline(route: Route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            fetched.append(route.request.url)
            route.abort()

    with chromium(chromium_path) as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", offline)
        page.goto(path.as_uri())
        rendered = eventually(lambda: _plots(page, 1))
        assert all(w > 100 and h > 100 for w, h in rendered["tcp-bt-price"])
        assert page.evaluate(ROWS_JS, "tcp-bt-trades") == [2]
        assert page.evaluate(ROWS_JS, "tcp-bt-candles") == [2000]
        assert [
            "Trade",
            "Entry (UTC)",
            "Entry price",
            "Exit (UTC)",
            "Exit price",
            "Quantity",
            "PnL",
            "Fees",
        ] in (page.evaluate(TOOLTIPS_JS))
        assert page.get_by_test_id("backtest-metrics").inner_text().count("\n") >= 2
        assert "Jan" in page.get_by_test_id("backtest-monthly").inner_text()
        page.wait_for_timeout(500)
    assert errors == [] and fetched == []


def _plots(page: Page, runs: int) -> dict[str, Any]:
    """The rendered backtest figures once each of price, equity and drawdown is drawn ``runs`` times."""
    found: dict[str, Any] = page.evaluate(RENDERED_JS)
    names = ("tcp-bt-price", "tcp-bt-equity", "tcp-bt-drawdown")
    assert all(len(found.get(n, [])) == runs for n in names), json.dumps(found)
    return found


def test_backtests_page_shows_two_stored_runs(chromium_path: Path, pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    closes = [round(100 + 3 * np.sin(i / 15) + (i % 7) / 5, 2) for i in range(240)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        store_candles(conn, "BTC-USDT", closes)
        first = store_run(conn, "BTC-USDT", "ema_crossover", closes)
        second = store_run(conn, "ETH-USDT", "rsi_reversal", closes[::-1])  # no candles stored
    process, url = serve_dashboard(
        {"DATABASE_URL": pg_url, "INSTRUMENTS": "BTC-USDT"}, tmp_path / "panel.log"
    )
    errors: list[str] = []
    try:
        with chromium(chromium_path) as browser:
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.locator(".bk-tab", has_text="Backtests").click()
            rows = page.get_by_test_id("backtest-run")
            eventually(lambda: rows.count() == 2)
            listed = [rows.nth(i).get_attribute("data-run-id") for i in range(2)]
            assert listed == [str(second.run_id), str(first.run_id)]
            assert "rsi_reversal" in rows.nth(0).inner_text() and "ema_crossover" in rows.nth(1).inner_text()
            eventually(lambda: _plots(page, 1))  # the newest run opens
            label = next(
                o
                for o in page.locator(".tcp-backtest-compare option").all_inner_texts()
                if "ema_crossover" in o
            )
            page.locator(".tcp-backtest-compare select").select_option(label=label)
            rendered = eventually(lambda: _plots(page, 2))
            (left, _), (right, _) = rendered["tcp-bt-price"]
            assert left > 200 and right > 200  # side by side, each drawn
            assert page.evaluate(DRAWN_TRADES_JS) == [2, 2]
            page.wait_for_timeout(500)
            page.screenshot(path=IMAGES / "dashboard-backtests.png", full_page=True)
    finally:
        stop(process)
    assert errors == []
    assert server_tracebacks(tmp_path / "panel.log") == []
