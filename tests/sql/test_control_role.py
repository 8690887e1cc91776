"""The control role on a real PostgreSQL: the control store works through it, and it can write nothing
but the bots and user indicators (and append to their change log): no other table, not even to read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from configs.bots import parse_bot_config
from configs.indicators import IndicatorEntry
from connectors.control_store import ControlStore
from sql.migrate import migrate
from sql.roles import (
    CONTROL_PASSWORD_ENV,
    CONTROL_SECRET_FILE,
    CONTROLLER,
    ensure_controller,
    ensure_reader,
)

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
EXPECTED = {  # written out: what the role may do, table by table; everything else is refused
    "bots": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "user_indicators": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "control_log": {"SELECT", "INSERT"},
}


@pytest.fixture
def controller(pg_url: str, tmp_path: Path) -> str:
    migrate(pg_url, "off")
    return ensure_controller(pg_url, tmp_path)


def relations(url: str) -> list[str]:
    with psycopg.connect(url) as owner:
        return [
            r[0]
            for r in owner.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p', 'S') ORDER BY 1"
            ).fetchall()
        ]


def granted(url: str, relation: str) -> set[str]:
    with psycopg.connect(url) as owner:
        return {
            p
            for p in PRIVILEGES
            if owner.execute(
                "SELECT has_table_privilege(%s, %s::regclass, %s)", (CONTROLLER, relation, p)
            ).fetchone()
            == (True,)
        }


def test_privileges_are_exactly_the_control_tables(controller: str, pg_url: str) -> None:
    every = relations(pg_url)
    assert {"candles_1m", "trades", "bot_fills", "bot_equity", "bot_state", "backtest_runs"} <= set(every)
    tables = {r: granted(pg_url, r) for r in every if not r.endswith("_seq")}
    assert {r: p for r, p in tables.items() if p} == EXPECTED
    with psycopg.connect(pg_url) as owner:
        role = owner.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = %s",
            (CONTROLLER,),
        ).fetchone()
        schema_create = owner.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (CONTROLLER,))
        assert schema_create.fetchone() == (False,)
    assert role == (True, False, False, False, False, False)


def test_the_store_works_through_the_role(controller: str, pg_url: str) -> None:
    bot = parse_bot_config({"name": "b", "symbol": "BTC-USDT", "timeframe": "1m", "strategy": "macd_cross"})
    with ControlStore(controller) as store:
        record = store.add_bot(bot)
        now = datetime(2026, 1, 1, tzinfo=UTC)
        with psycopg.connect(pg_url) as owner:  # the flow's rows, which the role cannot touch itself
            owner.execute(
                "INSERT INTO bot_fills VALUES (%s, %s, 0, %s, 'buy', 1, 1, 0)", (record.bot_id, now, now)
            )
        store.start_bot("b")
        store.pause_bot("b")
        store.stop_bot("b")
        store.add_indicator(
            "okx", "BTC-USDT", "1m", IndicatorEntry(indicator="EMA", params={"timeperiod": 3})
        )
        store.remove_indicator("okx", "BTC-USDT", "1m", "ema")
        cursor, loads = store.snapshot()
        assert (cursor, [c.state for c in loads]) == (6, ["stopped"])  # type: ignore[union-attr]
        store.remove_bot("b")  # its fills go with it (the cascade runs with the table owner's rights)
        assert len(store.changes_since(0)) == 7
    with psycopg.connect(pg_url) as owner:
        assert owner.execute("SELECT count(*) FROM bot_fills").fetchone() == (0,)
        assert owner.execute("SELECT count(*) FROM bots").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume) "
        "VALUES ('okx', 'X-Y', now(), 1, 1, 1, 1, 1)",
        "UPDATE trades SET price = 1",
        "DELETE FROM bot_fills",
        "INSERT INTO bot_state (bot_id, last_close, runner) VALUES (1, now(), 'x')",
        "UPDATE bot_equity SET equity = 0",
        "SELECT * FROM trades LIMIT 1",
        "SELECT * FROM bot_fills LIMIT 1",
        "UPDATE control_log SET action = 'start'",
        "DELETE FROM control_log",
        "TRUNCATE bots",
        "DROP TABLE user_indicators",
        "CREATE TABLE intruder (x int)",
        "CREATE ROLE intruder",
        "ALTER TABLE bots DISABLE TRIGGER ALL",
    ],
)
def test_cannot_touch_anything_else(controller: str, statement: str) -> None:
    with psycopg.connect(controller, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (CONTROLLER,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_refresh_takes_back_other_grants_and_keeps_the_password(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url, "off")
    first = ensure_controller(pg_url, tmp_path)
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute(f"GRANT SELECT, DELETE ON trades TO {CONTROLLER}")
        owner.execute("CREATE TABLE later_table (x int)")
    assert granted(pg_url, "trades") == {"SELECT", "DELETE"}
    assert ensure_controller(pg_url, tmp_path) == first  # same data directory, same role and password
    assert granted(pg_url, "trades") == set()
    assert granted(pg_url, "later_table") == set()
    assert stat.S_IMODE((tmp_path / CONTROL_SECRET_FILE).stat().st_mode) == 0o600
    reader = ensure_reader(pg_url, tmp_path)  # the two roles have their own passwords
    assert reader.split("@")[0] != first.split("@")[0]


def test_the_password_can_be_given_in_the_environment(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(pg_url, "off")
    monkeypatch.setenv(CONTROL_PASSWORD_ENV, "control-secret_2")
    url = ensure_controller(pg_url, tmp_path)
    assert f"{CONTROLLER}:control-secret_2@" in url
    assert not (tmp_path / CONTROL_SECRET_FILE).exists()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (CONTROLLER,)


def test_the_migrate_command_creates_the_control_role(pg_url: str, tmp_path: Path) -> None:
    """``tcp.py migrate`` (a deployment without ``up``) leaves the control role ready, as ``up`` does."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": pg_url}
    env.pop(CONTROL_PASSWORD_ENV, None)
    done = subprocess.run(
        [sys.executable, "-m", "sql.migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"Control role: {CONTROLLER}" in done.stdout
    assert (tmp_path / CONTROL_SECRET_FILE).exists()
    with psycopg.connect(pg_url) as owner:
        granted = {
            privilege
            for privilege in PRIVILEGES
            if owner.execute(
                "SELECT has_table_privilege(%s, 'bots', %s)", (CONTROLLER, privilege)
            ).fetchone()[0]
        }
    assert granted == EXPECTED["bots"]
