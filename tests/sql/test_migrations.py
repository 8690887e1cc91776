"""Migrations on a real plain PostgreSQL and a real TimescaleDB: applied once, idempotent, recorded."""

from __future__ import annotations

import re
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sql.migrate
from configs.errors import database_problem
from sql.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate, migrate_with_report

CORE_TABLES = {"trades", "candles_1m", "late_trades", "rejects"}
CANDLE_COLUMNS = [
    "exchange",
    "symbol",
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "first_trade_id",
    "last_trade_id",
]


def table_columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    ).fetchall()
    return dict(rows)


def test_discover_orders_files_and_reads_engine_suffix() -> None:
    found = discover()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert found[0].path.name == "0001_core_tables.sql" and found[0].engine is None
    assert any(m.engine == "timescale" for m in found)


def test_plain_postgres_applies_once_then_is_up_to_date(pg_url: str) -> None:
    first = migrate(pg_url)
    assert first == [m.path.name for m in discover() if m.engine in (None, "postgres")]
    assert migrate(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        assert CORE_TABLES <= tables
        engines = {r[0] for r in conn.execute("SELECT engine FROM schema_migrations")}
        assert engines == {"postgres"}
        assert set(CANDLE_COLUMNS) <= set(table_columns(conn, "candles_1m"))


def test_every_time_column_is_timestamptz(pg_url: str) -> None:
    migrate(pg_url)
    with psycopg.connect(pg_url) as conn:
        naive = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'"
        ).fetchall()
    assert naive == []


def test_prices_keep_the_exchange_decimal_exactly(pg_url: str) -> None:
    migrate(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO trades (exchange, symbol, trade_id, time, price, size, side, origin)"
            " VALUES ('okx', 'XRP-ETH', 13519807, '2019-10-11T00:00:11.620Z', %s, %s, 'sell', 'tape')",
            (Decimal("0.00141342"), Decimal("23.00000000")),
        )
        price, size = conn.execute("SELECT price, size FROM trades").fetchone()  # type: ignore[misc]
    assert (str(price), str(size)) == ("0.00141342", "23.00000000")


def test_trade_identity_and_candle_invariants_are_enforced(pg_url: str) -> None:
    migrate(pg_url)
    insert = (
        "INSERT INTO trades (exchange, symbol, trade_id, time, price, size, side, origin)"
        " VALUES ('okx', 'BTC-USDT', 1, '2024-01-01T00:00:00Z', 1, 1, 'buy', 'ws')"
    )
    with psycopg.connect(pg_url) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert)
    flat_with_volume = (
        "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume, quote_volume,"
        " trade_count) VALUES ('okx', 'BTC-USDT', '2024-01-01T00:01:00Z', 1, 1, 1, 1, 5, 5, 0)"
    )
    high_below_open = (
        "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume, quote_volume,"
        " trade_count, vwap, first_trade_id, last_trade_id)"
        " VALUES ('okx', 'BTC-USDT', '2024-01-01T00:01:00Z', 2, 1, 1, 1, 5, 5, 3, 1, 1, 3)"
    )
    for statement in (flat_with_volume, high_below_open):
        with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(statement)


def test_an_edited_migration_is_refused(pg_url: str, tmp_path: Path) -> None:
    copied = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copied)
    migrate(pg_url, directory=copied)
    first = copied / "0001_core_tables.sql"
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(pg_url, directory=copied)


def test_a_failing_migration_leaves_nothing_behind(pg_url: str, tmp_path: Path) -> None:
    copied = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copied)
    (copied / "0999_broken.sql").write_text("CREATE TABLE half_done (x int);\nSELECT no_such_function();\n")
    with pytest.raises(psycopg.Error):
        migrate(pg_url, directory=copied)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert 999 not in versions and 1 in versions


def test_timescaledb_on_refuses_plain_postgres(pg_url: str) -> None:
    with pytest.raises(MigrationError, match="does not offer the timescaledb extension"):
        migrate(pg_url, timescaledb="on")


@pytest.mark.timescale
def test_timescaledb_gets_hypertables_and_is_idempotent(timescale_url: str) -> None:
    first = migrate(timescale_url)
    assert first == [m.path.name for m in discover() if m.engine in (None, "timescale")]
    assert migrate(timescale_url) == []
    with psycopg.connect(timescale_url) as conn:
        hypertables = {
            r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        assert CORE_TABLES | {"indicators", "signals"} <= hypertables
        compressed = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT hypertable_name FROM timescaledb_information.compression_settings"
            )
        }
        assert {"trades", "candles_1m"} <= compressed
        engines = {r[0] for r in conn.execute("SELECT engine FROM schema_migrations")}
        assert engines == {"timescale"}


@pytest.mark.timescale
def test_same_columns_on_both_engines(pg_url: str, timescale_url: str) -> None:
    migrate(pg_url)
    migrate(timescale_url)
    for table in sorted(CORE_TABLES):
        with psycopg.connect(pg_url) as plain:
            plain_columns = table_columns(plain, table)
        with psycopg.connect(timescale_url) as tsdb:
            tsdb_columns = table_columns(tsdb, table)
        assert plain_columns == tsdb_columns, table


@pytest.mark.timescale
def test_timescaledb_off_gives_plain_tables(timescale_url: str) -> None:
    migrate(timescale_url, timescaledb="off")
    with psycopg.connect(timescale_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None
        engines = {r[0] for r in conn.execute("SELECT engine FROM schema_migrations")}
    assert engines == {"postgres"}


def test_progress_and_summary_name_each_file_its_time_and_the_engine(pg_url: str) -> None:
    seen: list[tuple[str, float]] = []
    report = migrate_with_report(pg_url, progress=lambda name, took: seen.append((name, took)))
    assert [name for name, _ in seen] == [m.path.name for m in discover() if m.engine in (None, "postgres")]
    assert all(took >= 0 for _, took in seen) and report.applied == seen
    assert re.fullmatch(
        r"Schema: \d+ migration\(s\) applied in \d+\.\d\d s \(engine: PostgreSQL \d+\.\d+\)", report.summary()
    )
    assert migrate_with_report(pg_url).summary().startswith("Schema: up to date in ")


def test_auto_falls_back_to_plain_tables_when_timescaledb_cannot_be_created(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The server claims the extension (as one with TimescaleDB installed would); CREATE EXTENSION then
    # really fails on this plain PostgreSQL, as it does on a server where TimescaleDB is not preloaded.
    monkeypatch.setattr(sql.migrate, "timescaledb_available", lambda conn: True)
    report = migrate_with_report(pg_url, "auto")
    assert report.fallback and "cannot be created" in report.fallback
    assert report.engine.startswith("PostgreSQL")
    assert "using plain PostgreSQL tables" in caplog.text
    with psycopg.connect(pg_url) as conn:
        assert {r[0] for r in conn.execute("SELECT engine FROM schema_migrations")} == {"postgres"}


def test_timescaledb_on_that_cannot_be_created_names_the_fix(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql.migrate, "timescaledb_available", lambda conn: True)
    with pytest.raises(MigrationError, match="cannot be created") as raised:
        migrate(pg_url, "on")
    assert "DATABASE__TIMESCALEDB=off" in str(raised.value)


# Captured from a real PostgreSQL with TimescaleDB installed but not in shared_preload_libraries
# (timescale/timescaledb issue #1849): the loader raises it as FATAL (no SQLSTATE given: XX000) and closes
# the connection.
NOT_PRELOADED = (
    'extension "timescaledb" must be preloaded\nHINT:  Please preload the timescaledb library via '
    "shared_preload_libraries.\n\nThis can be done by editing the config file at: "
    "/var/lib/pgsql/12/data/postgresql.conf\nand adding 'timescaledb' to the list in the "
    "shared_preload_libraries config.\n\t# Modify postgresql.conf:\n"
    "\tshared_preload_libraries = 'timescaledb'"
)


class FakeNotPreloadedConnection:
    """A FAKE connection: CREATE EXTENSION fails with the real error class and text of a server where
    TimescaleDB is installed but not preloaded (no such server is available to the tests)."""

    def execute(self, query: str) -> None:
        raise psycopg.errors.InternalError_(NOT_PRELOADED)


def test_not_preloaded_says_so_and_how_to_fix_it() -> None:
    fake: Any = FakeNotPreloadedConnection()
    with pytest.raises(MigrationError) as raised:
        sql.migrate._create_timescaledb(fake, "on", None)
    message = str(raised.value)
    assert "installed on the server but not preloaded" in message
    assert "shared_preload_libraries = 'timescaledb'" in message and "restart" in message
    assert "DATABASE__TIMESCALEDB=off" in message
    with pytest.raises(sql.migrate._TimescaleUnusable) as unusable:  # auto: falls back
        sql.migrate._create_timescaledb(fake, "auto", None)
    assert unusable.value.preload
    problem = database_problem(psycopg.errors.InternalError_(NOT_PRELOADED), None, "DATABASE_URL")
    assert "shared_preload_libraries = 'timescaledb'" in str(problem)


def test_a_fatal_error_is_reported_as_itself_not_as_a_closed_connection(pg_url: str, tmp_path: Path) -> None:
    copied = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copied)
    (copied / "0999_fatal.sql").write_text("SELECT pg_terminate_backend(pg_backend_pid());\n")
    with pytest.raises(psycopg.errors.AdminShutdown):
        migrate(pg_url, directory=copied)


def _swap_and_spot_minutes() -> list[tuple[Any, ...]]:
    """Two hours of 1m rows as the writer stored them before 0013 (no contract value column): a swap
    whose contracts are worth 10 (with flat minutes) and a spot series."""
    from datetime import UTC, datetime, timedelta

    from market.candles import vwap_of

    start = datetime(2024, 5, 1, tzinfo=UTC)
    rows = []
    for symbol, contract_value in (("MATIC-USDT-SWAP", Decimal(10)), ("BTC-USDT", Decimal(1))):
        for k in range(1, 121):
            close = start + timedelta(minutes=k)
            if k % 7 == 3:  # flat at the previous close
                p = Decimal("0.55")
                rows.append(("okx", symbol, close, p, p, p, p, 0, 0, 0, None, None, None))
                continue
            price, size = Decimal("0.55") + Decimal(k % 5) / 100, Decimal(3 + k % 4)
            quote = price * size * contract_value + Decimal(k) / 1000
            vwap = vwap_of(quote, size, contract_value)
            rows.append(
                ("okx", symbol, close, price, price, price, price, size, quote, 2, vwap, 10 * k, 10 * k + 1)
            )
    return rows


def _rollup_rows(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored rollup row (relation names are constants)."""
    return {
        name: conn.execute(
            "SELECT exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap,"
            f" first_trade_id, last_trade_id, contract_value, last_minute, sealed FROM {name}"
            " ORDER BY exchange, symbol, time"
        ).fetchall()
        for name in ("rollup_5m", "rollup_15m", "rollup_1h", "rollup_4h", "rollup_1d")
    }


@pytest.mark.parametrize("engine", ["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def test_the_contract_value_column_is_backfilled_and_the_rollups_stay_the_same(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from sql.policies import refresh_rollups

    url: str = request.getfixturevalue("pg_url" if engine == "postgres" else "timescale_url")
    released = tmp_path / "migrations"
    released.mkdir()
    for migration in discover():
        if migration.version <= 12:
            shutil.copy(migration.path, released)
    migrate(url, "off" if engine == "postgres" else "on", directory=released)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume, quote_volume,"
            " trade_count, vwap, first_trade_id, last_trade_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            _swap_and_spot_minutes(),
        )
        refresh_rollups(conn)
        before = _rollup_rows(conn)
    assert before["rollup_1h"] and before["rollup_5m"]

    applied = migrate(url, "off" if engine == "postgres" else "on")
    assert [name[:4] for name in applied][:3] == ["0013", "0014", "0015"]
    with psycopg.connect(url) as conn:
        values = dict(
            conn.execute(
                "SELECT symbol, array_agg(DISTINCT contract_value) FROM candles_1m GROUP BY symbol"
            ).fetchall()
        )
        assert values == {"MATIC-USDT-SWAP": [Decimal(10)], "BTC-USDT": [Decimal(1)]}
        assert _rollup_rows(conn) == before


def test_statements_after_the_marker_run_once_the_transaction_has_committed(
    pg_url: str, tmp_path: Path
) -> None:
    copied = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copied)
    (copied / "0998_after.sql").write_text(
        "CREATE TABLE later (x int);\n"
        f"{sql.migrate.AFTER_COMMIT}\n"
        "-- no transaction may hold this one\n"
        "CREATE INDEX CONCURRENTLY later_x ON later (x);\n"
    )
    (copied / "0999_after_fails.sql").write_text(
        f"CREATE TABLE kept (x int);\n{sql.migrate.AFTER_COMMIT}\nSELECT no_such_function();\n"
    )
    with pytest.raises(
        MigrationError, match="0999_after_fails.sql is applied, but its step after commit failed"
    ):
        migrate(pg_url, directory=copied)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('later_x')").fetchone() == ("later_x",)
        assert conn.execute("SELECT to_regclass('kept')").fetchone() == ("kept",)
        versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    assert {998, 999} <= versions
