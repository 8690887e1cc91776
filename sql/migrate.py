"""Numbered SQL migrations: each file applied once, in a transaction, and recorded.

Files are ``sql/migrations/NNNN_name.sql`` (every engine) or ``NNNN_name.timescale.sql`` (only where
TimescaleDB is used). A database records its engine on first migration; later runs keep it. An
applied file whose text has changed is an error: released migrations are never edited.

What follows a line ``-- migrate: after commit`` in a file runs once the file's transaction has committed,
one statement at a time (for statements no transaction may hold, e.g. refreshing a continuous aggregate).

Usage: ``python -m sql.migrate`` (uses the configured ``DATABASE_URL``) or :func:`migrate`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<engine>timescale|postgres))?\.sql$")
_LOCK_KEY = 7_160_815_001  # pg_advisory_lock key serialising concurrent migrators
AFTER_COMMIT = "-- migrate: after commit"

Engine = Literal["timescale", "postgres"]
log = logging.getLogger("sql.migrate")


class MigrationError(Exception):
    """The database cannot be brought to the current schema; the message says why and how to fix it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}\n  {fix}" if fix else problem)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    engine: Engine | None  # None: applies on every engine
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def parts(self) -> tuple[str, list[str]]:
        """The text run in the migration's transaction, and the statements run after it commits."""
        text = self.path.read_text()
        inside, marker, after = text.partition(f"\n{AFTER_COMMIT}\n")
        if not marker:
            return text, []
        code = "\n".join(line for line in after.splitlines() if not line.lstrip().startswith("--"))
        return inside, [statement.strip() for statement in code.split(";") if statement.strip()]


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


_ON = "DATABASE__TIMESCALEDB=on"
_OFF_FIX = "or set DATABASE__TIMESCALEDB=off for plain tables"
_PRELOAD_FIX = "Add shared_preload_libraries = 'timescaledb' to postgresql.conf and restart PostgreSQL"


class _TimescaleUnusable(Exception):
    """CREATE EXTENSION timescaledb failed on a database not yet set up (auto mode may fall back)."""

    def __init__(self, reason: str, preload: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.preload = preload


def _choose_engine(conn: psycopg.Connection, mode: str, recorded: str | None) -> Engine:
    available = timescaledb_available(conn)
    if recorded is not None:
        if recorded == "timescale" and not available:
            raise MigrationError(
                "this database was set up with TimescaleDB, but the server no longer offers the extension.",
                "Install TimescaleDB on the server again, or point DATABASE_URL at a new database.",
            )
        if mode == "on" and recorded != "timescale":
            raise MigrationError(
                f"{_ON}, but this database was set up on plain PostgreSQL.",
                "Set DATABASE__TIMESCALEDB=auto to keep using it, or point DATABASE_URL at a new database.",
            )
        return recorded  # type: ignore[return-value]
    if mode == "on" and not available:
        raise MigrationError(
            f"{_ON}, but the server does not offer the timescaledb extension (it is not installed).",
            "Install TimescaleDB on the server, or set DATABASE__TIMESCALEDB=auto for plain tables.",
        )
    return "timescale" if available and mode != "off" else "postgres"


def _create_timescaledb(conn: psycopg.Connection, mode: str, recorded: str | None) -> None:
    """CREATE EXTENSION timescaledb, or say plainly why it cannot be (e.g. not preloaded)."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as error:
        preload = "must be preloaded" in str(error)
        reason = (
            "TimescaleDB is installed on the server but not preloaded (shared_preload_libraries)"
            if preload
            else f"the timescaledb extension cannot be created ({str(error).splitlines()[0]})"
        )
        if mode == "auto" and recorded is None:
            raise _TimescaleUnusable(reason, preload) from error
        fix = f"{_PRELOAD_FIX}, {_OFF_FIX}." if preload else f"Fix that on the server, {_OFF_FIX}."
        if recorded == "timescale":
            fix = (_PRELOAD_FIX + "." if preload else "Fix that on the server.") + (
                " (This database holds TimescaleDB tables, so plain tables are not an option for it.)"
            )
        raise MigrationError(f"{reason}.", fix) from error


@dataclass
class MigrationReport:
    """What one run did: each file applied with its duration, the total time and the engine."""

    applied: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = ""
    fallback: str | None = None  # why TimescaleDB was not used although auto mode would have

    def summary(self) -> str:
        done = f"{len(self.applied)} migration(s) applied" if self.applied else "up to date"
        return f"Schema: {done} in {self.seconds:.2f} s (engine: {self.engine})"


def _engine_label(conn: psycopg.Connection, engine: Engine) -> str:
    version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
    if engine == "timescale":
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        return f"TimescaleDB {row[0] if row else '?'} on PostgreSQL {version}"
    return f"PostgreSQL {version}"


def migrate(
    url: str,
    timescaledb: str = "auto",
    directory: Path = MIGRATIONS_DIR,
    progress: Callable[[str, float], None] | None = None,
) -> list[str]:
    """Apply pending migrations; returns the file names applied (empty when up to date)."""
    return [name for name, _ in migrate_with_report(url, timescaledb, directory, progress).applied]


def migrate_with_report(
    url: str,
    timescaledb: str = "auto",
    directory: Path = MIGRATIONS_DIR,
    progress: Callable[[str, float], None] | None = None,
) -> MigrationReport:
    """Apply pending migrations, calling ``progress(file, seconds)`` after each, and log a summary.
    With ``timescaledb="auto"`` a new database gets plain tables when the extension cannot be loaded
    (the report's ``fallback`` says why; it is logged as a warning)."""
    began = time.monotonic()
    try:
        report = _migrate(url, timescaledb, directory, progress)
    except _TimescaleUnusable as unusable:
        fix = f"{_PRELOAD_FIX}, then migrate a new database." if unusable.preload else ""
        log.warning("%s: using plain PostgreSQL tables. %s", unusable.reason, fix)
        report = _migrate(url, "off", directory, progress)
        report.fallback = unusable.reason
    report.seconds = time.monotonic() - began
    log.info("%s", report.summary())
    return report


def _migrate(
    url: str, timescaledb: str, directory: Path, progress: Callable[[str, float], None] | None
) -> MigrationReport:
    migrations = discover(directory)
    report = MigrationReport()
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
            recorded = rows[0][1] if rows else None
            engine = _choose_engine(conn, timescaledb, recorded)
            if engine == "timescale":
                _create_timescaledb(conn, timescaledb, recorded)
            report.engine = _engine_label(conn, engine)
            for migration in migrations:
                if migration.engine not in (None, engine):
                    continue
                if migration.version in done:
                    file, checksum = done[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"{file} was changed after it was applied.",
                            "Restore it and add a new migration (released migrations are never edited).",
                        )
                    continue
                started = time.monotonic()
                _apply(conn, migration, engine)
                took = time.monotonic() - started
                log.info("applied %s in %.2f s", migration.path.name, took)
                report.applied.append((migration.path.name, took))
                if progress is not None:
                    progress(migration.path.name, took)
        finally:
            if not conn.closed:  # a FATAL error (e.g. TimescaleDB not preloaded) has closed it already
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return report


def _apply(conn: psycopg.Connection, migration: Migration, engine: Engine) -> None:
    inside, after_commit = migration.parts()
    with conn.transaction():
        conn.execute(inside)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, engine, file, checksum)"
            " VALUES (%s, %s, %s, %s, %s)",
            (migration.version, migration.name, engine, migration.path.name, migration.checksum),
        )
    for statement in after_commit:
        try:
            conn.execute(statement)
        except psycopg.Error as error:
            raise MigrationError(
                f"{migration.path.name} is applied, but its step after commit failed: {error}",
                f"Run what follows '{AFTER_COMMIT}' in it by hand (the rollups: python -m sql.policies"
                " --refresh-all).",
            ) from error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sql.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="overrides DATABASE_URL")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(argv)
    from configs.errors import run_cli

    return run_cli(lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    from configs.errors import UserError, check_database
    from configs.logs import configure_logging
    from configs.settings import load_settings

    settings = load_settings()
    configure_logging(
        settings, "migrate", level=logging.WARNING, text_format="%(levelname)s %(name)s: %(message)s"
    )
    source = "--database-url" if args.database_url else "DATABASE_URL"
    url = args.database_url or (settings.database_url.get_secret_value() if settings.database_url else None)
    if url is None:
        raise UserError(
            "DATABASE_URL is not set: there is no database to migrate.",
            "Set DATABASE_URL (or --database-url); python3 tcp.py up migrates its embedded database itself.",
        )
    check_database(url, source, settings.database.connect_timeout_seconds, embedded=False)
    report = migrate_with_report(
        url,
        settings.database.timescaledb,
        progress=lambda name, took: print(f"  applied {name} ({took:.2f} s)"),
    )
    print(report.summary())
    if settings.dashboard.database_url is None:
        from sql.roles import PASSWORD_ENV, READER, SECRET_FILE, ReaderUnavailable, ensure_reader

        try:
            ensure_reader(url, settings.data_dir)
        except ReaderUnavailable as error:
            print(
                f"Dashboard role {READER} not created ({error}); "
                "set DASHBOARD__DATABASE_URL to a SELECT-only role"
            )
        else:
            secret = settings.data_dir / SECRET_FILE
            kept = f"from {PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else f"in {secret}"
            print(f"Dashboard role: {READER}, SELECT only (password {kept})")
    _control_role(url, settings.data_dir)
    return 0


def _control_role(url: str, data_dir: Path) -> None:
    """The role the dashboard's control actions write with (``up --control``, docs/control.md)."""
    from sql.roles import CONTROLLER, ControllerUnavailable, ensure_controller

    try:
        ensure_controller(url, data_dir)
    except ControllerUnavailable as error:
        print(f"Control role {CONTROLLER} not created ({error}); the dashboard's control stays off")
    else:
        print(f"Control role: {CONTROLLER}, writes bots and user indicators only")


if __name__ == "__main__":
    sys.exit(main())
