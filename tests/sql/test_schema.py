"""sql.schema against the migrated schema of both engines: every public relation and column, in order,
with compatible types, nullability, primary keys and unique keys; and it reads through SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, Table, create_engine, func, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from sql import schema
from tests.sql.conftest import Loaded

INTERNAL = {"schema_migrations", "rollup_pending", *(f"rollup_{tf}" for tf in schema.TIMEFRAMES[1:])}
"""Relations the migrations create that are not read by users (docs/sql.md, "Relations")."""

RELATIONS = """
SELECT c.relname, c.relkind IN ('v', 'm') AS is_view
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
"""
COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
KEYS = """
SELECT con.contype, con.conname,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k (attnum, n)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.n)
FROM pg_constraint con
WHERE con.conrelid = %s::regclass AND con.contype IN ('p', 'u')
"""


def sql_type(table: Table, column: str) -> str:
    return table.c[column].type.compile(dialect=postgresql.dialect()).lower()


@pytest.fixture
def engine(xrp_db: Loaded) -> Iterator[Engine]:
    engine = create_engine(make_url(xrp_db.url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    yield engine
    engine.dispose()


def test_every_public_relation_has_metadata(xrp_db: Loaded) -> None:
    with psycopg.connect(xrp_db.url) as conn:
        found = dict(conn.execute(RELATIONS).fetchall())
    public = {name: is_view for name, is_view in found.items() if name not in INTERNAL}
    assert public == {name: bool(t.info.get("view")) for name, t in schema.metadata.tables.items()}


@pytest.mark.parametrize("name", sorted(schema.metadata.tables))
def test_columns_types_and_keys_match_the_migrated_relation(xrp_db: Loaded, name: str) -> None:
    table = schema.metadata.tables[name]
    with psycopg.connect(xrp_db.url) as conn:
        columns = conn.execute(COLUMNS, (name,)).fetchall()
        keys = conn.execute(KEYS, (name,)).fetchall()
    assert [(c, t) for c, t, _ in columns] == [(c.name, sql_type(table, c.name)) for c in table.columns]
    if not table.info.get("view"):  # a view's columns are nullable in the catalog: see the next test
        assert {c: not_null for c, _, not_null in columns} == {c.name: not c.nullable for c in table.columns}
    declared = {
        (
            "p" if constraint is table.primary_key else "u",
            constraint.name,
            tuple(c.name for c in constraint.columns),
        )
        for constraint in table.constraints
        if constraint.columns
    }
    assert {(kind, key, tuple(cols)) for kind, key, cols in keys} == declared


@pytest.mark.parametrize("name", sorted(n for n, t in schema.metadata.tables.items() if t.info.get("view")))
def test_view_columns_declared_not_null_hold_no_null(engine: Engine, name: str) -> None:
    view = schema.metadata.tables[name]
    required = [c for c in view.columns if not c.nullable]
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(view)).scalar_one()
        nulls = conn.execute(
            select(func.count()).select_from(view).where(or_(*(c.is_(None) for c in required)))
        ).scalar_one()
    assert rows > 0 and nulls == 0


def test_a_core_select_reads_the_stream_candles(engine: Engine, xrp_db: Loaded) -> None:
    hours = schema.candles_1h
    statement = (
        select(hours.c.time, hours.c.close)
        .where(hours.c.exchange == "okx", hours.c.symbol == "XRP-ETH")
        .order_by(hours.c.time)
    )
    with engine.connect() as conn:
        rows: list[Any] = list(conn.execute(statement))
    assert [tuple(r) for r in rows] == [(c.close_time, c.close) for c in xrp_db.stream.of("1h")]
