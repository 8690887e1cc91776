"""The Bots page on a real PostgreSQL (no browser): bots added through the control store, their equity
and fills written with plain SQL as the tables' contract says (independent of the flow's writer), the
page read-only without a control store and acting through one with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from configs.bots import BotConfig
from connectors.control_store import ControlStore
from dashboards.bots import BANNER, READ_ONLY, BotReader, BotsPage
from dashboards.data import ReadOnlyDatabase
from sql.migrate import migrate
from tests.dashboards.backtest_kit import MINUTE, T0, store_candles

CLOSES = [100.0, 101.0, 102.5, 101.5, 103.0, 104.0, 103.5, 105.0]


def config(name: str, **fields: Any) -> BotConfig:
    return BotConfig.model_validate(
        {"name": name, "symbol": "BTC-USDT", "timeframe": "1m", "strategy": "ema_crossover",
         "params": {"fast": 2, "slow": 3}, "account": {"cash": 1000.0, "fee_bps": 0}, **fields}
    )  # fmt: skip


def store_equity(conn: psycopg.Connection[Any], bot_id: int, first: int, last: int) -> None:
    """Equity points of candles ``first..last`` (0-based into CLOSES) as a bot's step writes them: flat,
    then at the third candle's open (101, the second close) all 1000 bought, fee 0, and held."""
    quantity = 1000.0 / CLOSES[1]  # bought at the third candle's open, the second's close
    for i in range(first, last + 1):
        position = quantity if i >= 2 else 0.0
        cash = 0.0 if i >= 2 else 1000.0
        conn.execute(
            "INSERT INTO bot_equity (bot_id, time, close, cash, position, equity)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (bot_id, T0 + (i + 1) * MINUTE, CLOSES[i], cash, position, cash + position * CLOSES[i]),
        )
    if first <= 2 <= last:
        conn.execute(
            "INSERT INTO bot_fills (bot_id, time, seq, signal_time, side, price, quantity, fee)"
            " VALUES (%s, %s, 0, %s, 'buy', %s, %s, 0)",
            (bot_id, T0 + 2 * MINUTE, T0 + 2 * MINUTE, CLOSES[1], quantity),
        )


@pytest.fixture
def stored(pg_url: str) -> Iterator[tuple[ReadOnlyDatabase, ControlStore, psycopg.Connection[Any]]]:
    migrate(pg_url)
    control = ControlStore(pg_url)
    conn = psycopg.connect(pg_url, autocommit=True)
    store_candles(conn, "BTC-USDT", CLOSES)
    trading = control.add_bot(config("ema-btc"))
    control.start_bot("ema-btc")
    control.add_bot(config("idle", symbol="ETH-USDT"))
    store_equity(conn, trading.bot_id, 0, 5)
    db = ReadOnlyDatabase(pg_url)
    yield db, control, conn
    db.close()
    control.close()
    conn.close()


def state_of(conn: psycopg.Connection[Any], name: str) -> str | None:
    row = conn.execute("SELECT state FROM bots WHERE name = %s", (name,)).fetchone()
    return None if row is None else str(row[0])


def test_the_summary_gives_each_bot_with_its_last_equity_and_fills(
    stored: tuple[ReadOnlyDatabase, ControlStore, psycopg.Connection[Any]],
) -> None:
    db, _, _ = stored
    bots = {b["name"]: b for b in BotReader(db).summary()}
    assert list(bots) == ["ema-btc", "idle"]
    trading, idle = bots["ema-btc"], bots["idle"]
    quantity = 1000.0 / CLOSES[1]
    assert trading["state"] == "running" and trading["fills"] == 1
    assert trading["time"] == T0 + 6 * MINUTE
    assert trading["equity"] == pytest.approx(quantity * CLOSES[5])
    assert trading["position"] == pytest.approx(quantity) and trading["close"] == CLOSES[5]
    assert idle["state"] == "created" and idle["fills"] == 0 and idle["equity"] is None


def test_without_control_the_page_only_shows(
    stored: tuple[ReadOnlyDatabase, ControlStore, psycopg.Connection[Any]],
) -> None:
    db, _, _ = stored
    page = BotsPage(BotReader(db), None, ["BTC-USDT"])
    assert page.table.object == ""  # nothing read before the tab is shown
    page.activate()
    assert page.banner.object == BANNER and "no order ever leaves this machine" in BANNER
    assert page.note.visible and "python3 tcp.py up --control" in READ_ONLY
    assert page.form is None and not page.actions.visible and len(page.actions) == 0
    table = str(page.table.object)
    assert table.count('data-testid="bot-row"') == 2 and 'data-state="created"' in table
    assert page.select.value == "ema-btc"  # the first bot opens
    position = str(page.position.object)  # 1000 / 101 units bought at 101, marked at the close 104
    assert "long 9.9009901 BTC-USDT since 2026-01-31 23:52 UTC at 101" in position
    assert "equity 1,029.70; unrealised +29.70" in position
    assert page.plot.object is not None


def fills_drawn(page: BotsPage) -> list[float]:
    source = next(m for m in page.plot.object.references() if getattr(m, "name", "") == "tcp-bot-fills")
    return list(source.data["price"])


def test_the_selected_bot_is_redrawn_only_when_it_changed(
    stored: tuple[ReadOnlyDatabase, ControlStore, psycopg.Connection[Any]],
) -> None:
    db, control, conn = stored
    page = BotsPage(BotReader(db), None, ["BTC-USDT"])
    page.activate()
    drawn = page.plot.object
    assert fills_drawn(page) == [CLOSES[1]]
    page.refresh()
    assert page.plot.object is drawn  # nothing new: the figures stay
    bot = control.bot("ema-btc")
    assert bot is not None
    store_equity(conn, bot.bot_id, 6, 7)
    page.refresh()
    assert page.plot.object is not drawn
    assert "1,039.60" in str(page.table.object)  # 9.90099 units at the newest close, 105
    page.select.value = "idle"
    assert "No candle processed yet" in str(page.position.object) and page.plot.object is None


def test_with_control_the_page_creates_and_changes_bots(
    stored: tuple[ReadOnlyDatabase, ControlStore, psycopg.Connection[Any]],
) -> None:
    db, control, conn = stored
    page = BotsPage(BotReader(db), control, ["BTC-USDT", "ETH-USDT"], "")
    page.activate()
    assert page.form is not None and page.actions.visible and not page.note.visible
    page.form.name_input.value = "new-bot"
    page.form.symbol.value = "ETH-USDT"
    assert page.form.send() is not None
    assert state_of(conn, "new-bot") == "created" and page.select.value == "new-bot"
    logged = conn.execute("SELECT action, target FROM control_log ORDER BY change_id DESC LIMIT 1")
    assert logged.fetchone() == ("add", "new-bot")
    start, pause, stop, delete = (page.buttons[verb] for verb in ("start", "pause", "stop", "delete"))
    pause.clicks += 1  # a created bot cannot be paused: the store's reason, in one line
    assert page.message.alert_type == "danger" and "created" in str(page.message.object)
    assert state_of(conn, "new-bot") == "created"
    start.clicks += 1
    assert state_of(conn, "new-bot") == "running" and 'data-bot="new-bot" data-state="running"' in str(
        page.table.object
    )
    pause.clicks += 1
    assert state_of(conn, "new-bot") == "paused"
    stop.clicks += 1
    assert state_of(conn, "new-bot") == "stopped"
    delete.clicks += 1  # asks first
    assert page.confirm.visible and state_of(conn, "new-bot") == "stopped"
    sure, cancel = page.buttons["confirm"], page.buttons["cancel"]
    cancel.clicks += 1
    assert not page.confirm.visible and state_of(conn, "new-bot") == "stopped"
    delete.clicks += 1
    sure.clicks += 1
    assert state_of(conn, "new-bot") is None and "new-bot" not in page.select.options


def test_a_name_taken_is_refused_in_the_form(
    stored: tuple[ReadOnlyDatabase, ControlStore, psycopg.Connection[Any]],
) -> None:
    db, control, conn = stored
    page = BotsPage(BotReader(db), control, ["BTC-USDT"], "")
    page.activate()
    assert page.form is not None
    page.form.name_input.value = "ema-btc"
    assert page.form.send() is None
    assert "already exists" in str(page.form.message.object)
    count = conn.execute("SELECT count(*) FROM bots").fetchone()
    assert count == (2,)


def test_a_control_database_that_does_not_answer_is_said_in_one_line(
    stored: tuple[ReadOnlyDatabase, ControlStore, psycopg.Connection[Any]],
) -> None:
    db, _, conn = stored
    with ControlStore("postgresql://tcp_control@127.0.0.1:1/tcp", connect_timeout=1) as unreachable:
        page = BotsPage(BotReader(db), unreachable, ["BTC-USDT"], "")
        page.activate()
        assert page.form is not None
        page.form.name_input.value = "new-bot"
        assert page.form.send() is None
        said = str(page.form.message.object)
        assert said.startswith("the database did not confirm the change (OperationalError)"), said
        page.buttons["start"].clicks += 1
        assert "did not confirm" in str(page.message.object) and "\n" not in str(page.message.object)
    assert conn.execute("SELECT count(*) FROM bots").fetchone() == (2,)
