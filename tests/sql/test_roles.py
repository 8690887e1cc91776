"""The dashboard's role on a real PostgreSQL: reads every table and view, including those created by
later migrations, and cannot write, create or lift its way out of read-only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import stat
from pathlib import Path

import psycopg
import pytest

from sql.migrate import migrate
from sql.roles import PASSWORD_ENV, READER, SECRET_FILE, ensure_reader


@pytest.fixture
def reader(pg_url: str, tmp_path: Path) -> str:
    migrate(pg_url, "off")
    return ensure_reader(pg_url, tmp_path)


def test_reads_every_relation_of_the_schema(reader: str, pg_url: str) -> None:
    with psycopg.connect(pg_url) as owner:
        relations = [
            r[0]
            for r in owner.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY 1"
            ).fetchall()
        ]
    assert {"candles_1m", "candles_5m", "trades", "collector_health", "indicators"} <= set(relations)
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (READER,)
        for relation in relations:
            conn.execute(psycopg.sql.SQL("SELECT * FROM {} LIMIT 1").format(psycopg.sql.Identifier(relation)))


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO collector_health VALUES ('x', now(), 'running', true, now(), null, '{}')",
        "DELETE FROM candles_1m",
        "UPDATE trades SET price = 1",
        "CREATE TABLE intruder (x int)",
        "DROP TABLE gaps",
        "CREATE ROLE intruder",
    ],
)
def test_cannot_write_even_after_lifting_read_only(reader: str, statement: str) -> None:
    with psycopg.connect(reader, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_tables_created_later_are_readable_and_the_password_is_kept(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url, "off")
    first = ensure_reader(pg_url, tmp_path)
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute("CREATE TABLE later_table (x int)")
    assert ensure_reader(pg_url, tmp_path) == first  # same data directory, same role and password
    with psycopg.connect(first) as conn:
        assert conn.execute("SELECT count(*) FROM later_table").fetchone() == (0,)
    mode = stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode)
    assert mode == 0o600


def test_the_password_can_be_given_in_the_environment(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment that hands the dashboard its URL itself (docker-compose.yml) gives the password."""
    migrate(pg_url, "off")
    monkeypatch.setenv(PASSWORD_ENV, "given-secret_1")
    url = ensure_reader(pg_url, tmp_path)
    assert ":given-secret_1@" in url
    assert not (tmp_path / SECRET_FILE).exists()
    with psycopg.connect(pg_url) as owner:
        row = owner.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (READER,)).fetchone()
    assert row is not None and scram_matches(row[0], "given-secret_1")
    assert not scram_matches(row[0], "another")


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier (RFC 7677, as PostgreSQL keeps it) is of ``password``."""
    method, rest = verifier.split("$", 1)
    assert method == "SCRAM-SHA-256"
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)
