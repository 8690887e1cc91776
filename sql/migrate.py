"""Numbered SQL migrations: each file applied once, in a transaction, and recorded.

Files are ``sql/migrations/NNNN_name.sql`` (every engine) or ``NNNN_name.timescale.sql`` (only where
TimescaleDB is used). A database records its engine on first migration; later runs keep it. An
applied file whose text has changed is an error: released migrations are never edited.

Usage: ``python -m sql.migrate`` (uses the configured ``DATABASE_URL``) or :func:`migrate`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<engine>timescale|postgres))?\.sql$")
_LOCK_KEY = 7_160_815_001  # pg_advisory_lock key serialising concurrent migrators

Engine = Literal["timescale", "postgres"]
log = logging.getLogger("sql.migrate")


class MigrationError(Exception):
    """The database cannot be brought to the current schema; the message says why."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    engine: Engine | None  # None: applies on every engine
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[tuple[int, str | None], Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: not a migration name (NNNN_name[.timescale|.postgres].sql)")
        engine = match["engine"]
        migration = Migration(int(match["version"]), match["name"], engine, path)  # type: ignore[arg-type]
        if (migration.version, engine) in found or (migration.version, None) in found:
            raise MigrationError(f"{path.name}: version {migration.version:04d} is used twice")
        found[(migration.version, engine)] = migration
    return sorted(found.values(), key=lambda m: (m.version, m.engine or ""))


def timescaledb_available(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def _choose_engine(conn: psycopg.Connection, mode: str, recorded: str | None) -> Engine:
    available = timescaledb_available(conn)
    if recorded is not None:
        if recorded == "timescale" and not available:
            raise MigrationError("this database was set up with TimescaleDB but the extension is missing now")
        if mode == "on" and recorded != "timescale":
            raise MigrationError("timescaledb=on, but this database was set up on plain PostgreSQL")
        return recorded  # type: ignore[return-value]
    if mode == "on" and not available:
        raise MigrationError("timescaledb=on, but the server does not offer the timescaledb extension")
    return "timescale" if available and mode != "off" else "postgres"


def migrate(url: str, timescaledb: str = "auto", directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the file names applied (empty when up to date)."""
    migrations = discover(directory)
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer     PRIMARY KEY,
                       name       text        NOT NULL,
                       engine     text        NOT NULL,
                       file       text        NOT NULL,
                       checksum   text        NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = conn.execute("SELECT version, engine, file, checksum FROM schema_migrations").fetchall()
            done = {version: (file, checksum) for version, _, file, checksum in rows}
            engine = _choose_engine(conn, timescaledb, rows[0][1] if rows else None)
            if engine == "timescale":
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            for migration in migrations:
                if migration.engine not in (None, engine):
                    continue
                if migration.version in done:
                    file, checksum = done[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(f"{file} was changed after it was applied; add a new migration")
                    continue
                with conn.transaction():
                    conn.execute(migration.path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, engine, file, checksum)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (migration.version, migration.name, engine, migration.path.name, migration.checksum),
                    )
                log.info("applied %s", migration.path.name)
                applied_now.append(migration.path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def main(argv: list[str] | None = None) -> int:
    from configs.settings import ConfigError, load_settings

    parser = argparse.ArgumentParser(prog="python -m sql.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="overrides DATABASE_URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    url = args.database_url or (settings.database_url.get_secret_value() if settings.database_url else None)
    if url is None:
        print("DATABASE_URL is not set (the run command `python3 tcp.py up` starts an embedded database)",
              file=sys.stderr)
        return 2
    try:
        applied = migrate(url, settings.database.timescaledb)
    except (MigrationError, psycopg.Error) as error:
        print(f"migration failed: {error}", file=sys.stderr)
        return 1
    print(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
