"""Paper-trading bots and user indicators through the real entry points and a real headless Chromium.

``python3 tcp.py up --offline <tape> --control`` on a fresh data directory, over a tape whose minutes
alternate between two price levels, so that an ``ema_crossover`` bot with fast=2 and slow=3 signals on
every candle from its fourth on, wherever it starts (on the bundled demo tape it may not trade at all in
its ten minutes). From the page: a user indicator (SMA of 2) added from the chart's picker appears with
its history and then live; a bot created and started from the Bots page takes fills whose P&L arrives
on the page; it is paused, and ``up`` is restarted. Then the bot has resumed exactly: its equity rows go
on minute by minute with no gap, the rows and fills written before the restart are unchanged, no fill
came while paused, its fills and equity while it ran equal a backtest (``flows.backtest.run_backtest``)
over the stored candles of that period with its configuration, and while paused it marked its unchanged
position at each stored close.

It takes about ten minutes: the simulated market closes one candle a minute, and the bot's first fill
is at its fifth. Needs Chromium (``apt-get update && apt-get install -y chromium``); skipped with that
hint otherwise. The screenshot goes to docs/images/dashboard-bots.png.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Page

from configs.bots import BotConfig
from configs.indicators import parse_indicator_config
from connectors.control_store import ControlStore
from connectors.memory import BatchSource, in_batches
from connectors.resume import StoredHistory
from flows.backtest import run_backtest
from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.dashboards.test_browser import chromium_path, eventually, server_tracebacks, stop
from tests.e2e.test_first_hour import Up, open_dashboard
from tests.support.browser import chromium, free_port, serve_dashboard

__all__ = ["chromium_path"]  # the fixture, used by name

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

IMAGES = REPO_ROOT / "docs" / "images"
MINUTE = timedelta(minutes=1)
BOT = "e2e-ema"
LABEL = "sma_user"
BOT_CONFIG = {
    "name": BOT,
    "symbol": "BTC-USDT",
    "timeframe": "1m",
    "strategy": "ema_crossover",
    "params": {"fast": 2, "slow": 3},
    "account": {"short": True},
}
"""The bot the page creates (the form's defaults otherwise)."""
LEVELS = (61_000.0, 61_250.0)
"""The tape's minutes close at these levels in turn."""
FIRST_FILL_WITHIN = 480.0  # the bot's first candle within a minute of its start, its first fill at its fifth
ROWS_JS = """name => { let most = null; for (const doc of window.Bokeh.documents)
    for (const m of doc._all_models.values()) if (m.name === name && m.data)
      most = Math.max(most ?? 0, Object.values(m.data)[0].length); return most; }"""
VALUES_JS = """name => { for (const doc of window.Bokeh.documents) { const m = doc.get_model_by_name(name);
    if (m) return m.data.value.filter(v => v !== null && !Number.isNaN(v)).length; } return null; }"""


def zigzag_tape(path: Path, minutes: int = 60) -> Path:
    """An OKX trades tape of BTC-USDT: three trades a minute, each minute closing at the other level."""
    start = datetime(2024, 8, 9, tzinfo=UTC)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instrument_name", "trade_id", "side", "price", "size", "created_time"])
        trade_id = 1_000_000
        for minute in range(minutes):
            level = LEVELS[minute % 2]
            for second, price in ((10, level - 5), (30, level + 5), (50, level)):
                at = start + minute * MINUTE + timedelta(seconds=second)
                trade_id += 1
                side = "buy" if second == 30 else "sell"
                writer.writerow(
                    ["BTC-USDT", trade_id, side, f"{price:.2f}", "0.01", int(at.timestamp() * 1000)]
                )
    return path


def rows(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def bot_equity(url: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT e.time, e.close, e.cash, e.position, e.equity FROM bot_equity e JOIN bots b USING (bot_id)"
        " WHERE b.name = %s ORDER BY e.time",
        BOT,
    )


def bot_fills(url: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT f.time, f.signal_time, f.side, f.price, f.quantity, f.fee FROM bot_fills f"
        " JOIN bots b USING (bot_id) WHERE b.name = %s ORDER BY f.time, f.seq",
        BOT,
    )


def closes(url: str) -> dict[datetime, float]:
    return {
        t: float(c)
        for t, c in rows(
            url, "SELECT time, close FROM candles WHERE symbol = 'BTC-USDT' AND timeframe = '1m'"
        )
    }


# -- the page -----------------------------------------------------------------------------------------
def add_user_indicator(page: Page) -> None:
    """SMA with timeperiod 2, labelled ``sma_user``, from the chart's picker."""
    page.locator(".tcp-add-indicator-name select").select_option("SMA")
    period = page.locator(".tcp-indicator-param-timeperiod input")
    period.fill("2")
    period.press("Enter")
    page.locator(".tcp-add-indicator-label input").fill(LABEL)
    page.locator(".tcp-add-indicator-label input").press("Enter")
    page.locator(".tcp-add-indicator button").click()
    page.locator(f'.tcp-user-indicator[data-label="{LABEL}"]').wait_for(timeout=15_000)


def create_and_start_bot(page: Page) -> None:
    """ema_crossover 2/3 on BTC-USDT 1m, shorts allowed, from the Bots page; then Start."""
    page.locator(".bk-tab", has_text="Bots").click()
    page.get_by_text("Paper trading only: no order ever leaves this machine.").wait_for(timeout=10_000)
    page.locator(".tcp-bot-name input").fill(BOT)
    page.locator(".tcp-bot-symbol select").select_option("BTC-USDT")
    page.locator(".tcp-bot-timeframe select").select_option("1m")
    page.locator(".tcp-bot-strategy select").select_option("ema_crossover")
    for name, value in (("fast", "2"), ("slow", "3")):
        field = page.locator(f".tcp-bot-param-{name} input")
        field.fill(value)
        field.press("Enter")
    page.locator(".tcp-bot-short input").check()
    page.locator(".tcp-bot-create button").click()
    page.locator(f'[data-testid="bot-row"][data-bot="{BOT}"][data-state="created"]').wait_for(timeout=15_000)
    page.locator(".tcp-bot-start button").click()
    page.locator(f'[data-testid="bot-row"][data-bot="{BOT}"][data-state="running"]').wait_for(timeout=15_000)


def row_cells(page: Page) -> list[str]:
    return page.locator(f'[data-testid="bot-row"][data-bot="{BOT}"] td').all_inner_texts()


def page_agrees(page: Page, url: str) -> list[str]:
    """The bot's row shows the stored fills and last equity, P&L against its 10 000 of cash, and the
    browser holds one marker per stored fill."""
    equity, fills = bot_equity(url), bot_fills(url)
    cells = row_cells(page)
    last = float(equity[-1][4])
    assert cells[4] == f"{last:,.2f}" and cells[5].startswith(f"{last - 10_000:+,.2f}"), (cells, last)
    assert cells[8] == str(len(fills)), (cells, len(fills))
    assert page.evaluate(ROWS_JS, "tcp-bot-fills") == len(fills)
    return cells


def pause_after_a_candle(page: Page, url: str) -> datetime:
    """Pause just after the bot has marked a new candle, so that the next one is about a minute away and
    the last candle the bot ran on is known; returns its close."""
    newest = bot_equity(url)[-1][0]
    eventually(lambda: bot_equity(url)[-1][0] > newest, 90)
    last = bot_equity(url)[-1][0]
    page.locator(".tcp-bot-pause button").click()
    page.locator(f'[data-testid="bot-row"][data-bot="{BOT}"][data-state="paused"]').wait_for(timeout=15_000)
    return last


def paused_between(url: str, last_running: datetime) -> None:
    """The pause was committed well before the candle after ``last_running`` was stored."""
    ((paused_at,),) = rows(url, "SELECT max(at) FROM control_log WHERE action = 'pause' AND target = %s", BOT)
    ((stored_at,),) = rows(
        url,
        "SELECT inserted_at FROM candles_1m WHERE symbol = 'BTC-USDT' AND time = %s",
        last_running + MINUTE,
    )
    assert paused_at + timedelta(seconds=5) < stored_at, (paused_at, stored_at)


# -- the checks -----------------------------------------------------------------------------------------
def indicator_values(url: str) -> list[tuple[datetime, float]]:
    return [
        (t, float(v))
        for t, v in rows(
            url,
            "SELECT time, value FROM indicators WHERE symbol = 'BTC-USDT' AND timeframe = '1m'"
            " AND indicator = %s AND output = 'value' ORDER BY time",
            LABEL,
        )
    ]


def sma_is_right(url: str, added: datetime) -> int:
    """The user indicator's stored values: some stamped before it was added (its history) and some
    after (live), each the mean of that candle's close and the one before (SMA of 2, by hand)."""
    values, stored = indicator_values(url), closes(url)
    assert any(t <= added for t, _ in values), f"no history before {added}: {values}"
    assert any(t > added for t, _ in values), f"nothing live after {added}: {values}"
    for t, value in values:
        assert value == pytest.approx((stored[t] + stored[t - MINUTE]) / 2), t
    return len(values)


def backtest_of(url: str, first_close: datetime, last_close: datetime) -> tuple[list[Any], list[Any]]:
    """Fills and equity of a backtest with the bot's configuration over the stored candles closing in
    ``[first_close, last_close]``."""
    config = BotConfig.model_validate(BOT_CONFIG)
    candles = list(StoredHistory(url).range("okx", "BTC-USDT", "1m", first_close - MINUTE, last_close))
    strategies = parse_indicator_config(
        {"profiles": [{"strategies": [{"strategy": "ema_crossover", "params": {"fast": 2, "slow": 3}}]}]}
    )
    (run,) = run_backtest(BatchSource(in_batches(candles, 50)), strategies, config.account_settings())
    fills = [(f.time, f.signal_time, f.side, f.price, f.quantity, f.fee) for f in run.fills]
    equity = [(p.time, p.close, p.cash, p.position, p.equity) for p in run.equity]
    return fills, equity


def resumed_exactly(url: str, before: list[tuple[Any, ...]], fills_before: list[tuple[Any, ...]]) -> None:
    equity, fills = bot_equity(url), bot_fills(url)
    times = [row[0] for row in equity]
    assert all(b - a == MINUTE for a, b in zip(times, times[1:], strict=False)), f"a gap: {times}"
    assert equity[: len(before)] == before, "an equity row written before the restart changed"
    assert fills == fills_before, "a fill changed, or came while paused"


def ran_as_a_backtest(url: str, last_running: datetime) -> None:
    """While running (to the candle closing at ``last_running``): fills and equity equal the backtest's
    over the same candles. While paused: the position held at the pause, marked at each stored close."""
    equity, fills, stored = bot_equity(url), bot_fills(url), closes(url)
    running = [row for row in equity if row[0] <= last_running]
    expected_fills, expected_equity = backtest_of(url, equity[0][0], last_running)
    assert fills == expected_fills
    assert running == expected_equity
    _, _, cash, position, _ = running[-1]
    for time_, close, cash_now, position_now, value in equity[len(running) :]:
        assert (close, cash_now, position_now) == (stored[time_], cash, position), time_
        assert value == pytest.approx(cash + position * close)


def test_a_bot_from_the_page_trades_pauses_and_resumes_exactly_across_a_restart(
    chromium_path: Path, tmp_path: Path
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    tape = zigzag_tape(tmp_path / "zigzag-BTC-USDT.csv")
    args = ("--offline", str(tape), "--control")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with chromium(chromium_path) as browser:
        first = Up(data_dir, port, *args)
        try:
            url = first.wait_for(r'psql "([^"]+)"', timeout=90)[1]
            page = open_dashboard(browser, first, port)
            eventually(lambda: len(closes(url)) >= 2, 150)  # a history for the indicator
            add_user_indicator(page)
            added = datetime.now(UTC)
            eventually(lambda: (page.evaluate(VALUES_JS, f"tcp-indicator-{LABEL}") or 0) >= 1, 30)
            create_and_start_bot(page)
            eventually(lambda: len(bot_fills(url)) >= 1, FIRST_FILL_WITHIN)
            eventually(lambda: page_agrees(page, url), 15)
            shown = sma_is_right(url, added)
            page.locator(".bk-tab", has_text="Chart").click()
            eventually(lambda: (page.evaluate(VALUES_JS, f"tcp-indicator-{LABEL}") or 0) >= shown, 20)
            page.locator(".bk-tab", has_text="Bots").click()
            last_running = pause_after_a_candle(page, url)
            page.wait_for_timeout(1000)
            page.screenshot(path=IMAGES / "dashboard-bots.png", full_page=True)
            assert "Traceback" not in page.content()
            before, fills_before = bot_equity(url), bot_fills(url)
            page.close()
        finally:
            code = first.interrupt()
        assert code == 0, first.text

        second = Up(data_dir, port, *args)
        try:
            url = second.wait_for(r'psql "([^"]+)"', timeout=90)[1]
            restarted = datetime.now(UTC)
            page = open_dashboard(browser, second, port)
            # a candle closing a full minute after the restart: the missed ones were replayed before it
            after = restarted.replace(second=0, microsecond=0) + 2 * MINUTE
            eventually(lambda: bot_equity(url)[-1][0] >= after, 180)
            resumed_exactly(url, before, fills_before)
            paused_between(url, last_running)
            ran_as_a_backtest(url, last_running)
            page.locator(".bk-tab", has_text="Bots").click()
            page.locator(f'[data-testid="bot-row"][data-bot="{BOT}"][data-state="paused"]').wait_for(
                timeout=15_000
            )
            eventually(lambda: page_agrees(page, url), 15)
            assert page.locator(".tcp-bot-start button").is_visible()  # control is on
            assert "Traceback" not in page.content()
        finally:
            code = second.interrupt()
        assert code == 0, second.text
    # neither failed on the way (the supervisor's restart would hide it from the checks above)
    assert "Traceback" not in (data_dir / "logs" / "flow.log").read_text()
    assert server_tracebacks(data_dir / "logs" / "dashboard.log") == []


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "python3 tcp.py up --control"),
        ({"DASHBOARD__CONTROL": "true"}, "no control connection was given (DASHBOARD_CONTROL_URL)"),
    ],
)
def test_without_control_the_page_only_shows(
    chromium_path: Path, pg_url: str, tmp_path: Path, env: dict[str, str], said: str
) -> None:
    """Control off (or on without its connection): the bots are listed, nothing can be changed, the
    page says how to turn control on, and the chart offers no indicator form."""
    migrate(pg_url)
    with ControlStore(pg_url) as control:
        control.add_bot(BotConfig.model_validate({**BOT_CONFIG, "name": "listed"}))
    process, page_url = serve_dashboard(
        {"DATABASE_URL": pg_url, "INSTRUMENTS": "BTC-USDT", **env}, tmp_path / "panel.log"
    )
    try:
        with chromium(chromium_path) as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(page_url)
            page.locator(".tcp-indicators").first.wait_for(timeout=30_000)
            assert page.locator(".tcp-indicator-form").count() == 0
            page.locator(".bk-tab", has_text="Bots").click()
            page.locator('[data-testid="bot-row"][data-bot="listed"][data-state="created"]').wait_for(
                timeout=15_000
            )
            page.get_by_text(said).wait_for(timeout=5_000)
            assert page.get_by_text("Paper trading only: no order ever leaves this machine.").is_visible()
            for hidden in (".tcp-bot-form", ".tcp-bot-start", ".tcp-bot-delete"):
                assert page.locator(hidden).count() == 0, hidden
    finally:
        stop(process)
    assert server_tracebacks(tmp_path / "panel.log") == []
