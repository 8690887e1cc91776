"""Storage policies and rollup refresh, on TimescaleDB and on plain PostgreSQL (docs/sql.md, "Policies").

- :func:`apply_policies` registers the compression, retention and rollup-refresh jobs of the ``storage``
  settings on TimescaleDB, idempotently (a job already configured as asked is left alone). Migrations
  register the defaults; this re-applies the configured values. Retention is opt-in: a table whose
  ``*_retention`` is ``never`` (the default) has no retention job and is never deleted from. Plain
  PostgreSQL has no jobs.
- :func:`run_maintenance` does the work once, now: on TimescaleDB ``CALL run_job`` for each job of the
  project; on plain PostgreSQL the same retention as ``DELETE``\\ s (schedule ``--run`` with cron).
- :func:`refresh_rollups` brings the higher timeframes up to date over a range, on either engine.

Usage: ``python -m sql.policies [--run] [--refresh-all]`` (uses ``DATABASE_URL`` and the settings).
Every statement is a constant; relation names come from the fixed tables below, values are bound.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import psycopg
from psycopg import sql

from configs.settings import StorageSettings

log = logging.getLogger("sql.policies")

Engine = Literal["timescale", "postgres"]
ROLLUPS: tuple[str, ...] = ("rollup_5m", "rollup_15m", "rollup_1h", "rollup_4h", "rollup_1d")
"""Storage of the higher timeframes, in refresh order (each level is built from the one before)."""
WIDTHS: tuple[timedelta, ...] = tuple(timedelta(minutes=m) for m in (5, 15, 60, 240, 1440))
"""The interval width of each of ``ROLLUPS``."""


class PolicyError(Exception):
    """The policies cannot be applied as configured; the message says why."""


@dataclass(frozen=True)
class Retention:
    relation: str
    time_column: str
    setting: str  # the StorageSettings field giving the age


RETENTION: tuple[Retention, ...] = (
    Retention("trades", "time", "trades_retention"),
    Retention("late_trades", "time", "rejects_retention"),
    Retention("rejects", "received_at", "rejects_retention"),
    Retention("candles_1m", "time", "candles_retention"),
    *(Retention(name, "time", "candles_retention") for name in ROLLUPS),
    Retention("indicators", "time", "indicators_retention"),
    Retention("signals", "time", "indicators_retention"),
)
"""Every table that ages out; on TimescaleDB each is a hypertable or a continuous aggregate."""

GAPS_RETENTION = Retention("gaps", "detected_at", "candles_retention")
"""A small plain table on both engines: always trimmed with DELETE."""

COMPRESSION: tuple[tuple[str, str], ...] = (
    ("trades", "trades_compress_after"),
    ("candles_1m", "candles_compress_after"),
    ("indicators", "candles_compress_after"),
    *((name, "rollups_compress_after") for name in ROLLUPS),
)
"""TimescaleDB: (hypertable or continuous aggregate, StorageSettings field)."""


def engine_of(conn: psycopg.Connection) -> Engine:
    """The engine recorded by the migrator."""
    row = conn.execute("SELECT engine FROM schema_migrations LIMIT 1").fetchone()
    if row is None:
        raise PolicyError("the database has no migrations applied (run python -m sql.migrate first)")
    return "timescale" if row[0] == "timescale" else "postgres"


def _job(conn: psycopg.Connection, proc: str, relation: str) -> tuple[int, dict[str, object]] | None:
    row = conn.execute(
        "SELECT job_id, config FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_name = %s",
        (proc, relation),  # for a continuous aggregate the view's name
    ).fetchone()
    return (row[0], row[1]) if row else None


def _same_intervals(
    conn: psycopg.Connection, config: dict[str, object], wanted: dict[str, timedelta]
) -> bool:
    for key, value in wanted.items():
        current = config.get(key)
        if current is None:
            return False
        row = conn.execute("SELECT %s::interval = %s::interval", (str(current), value)).fetchone()
        if not row or not row[0]:
            return False
    return True


def apply_policies(
    conn: psycopg.Connection, storage: StorageSettings, candle_grace: timedelta = timedelta(seconds=2)
) -> list[str]:
    """Register the configured jobs on TimescaleDB; returns what changed (empty when already so).

    ``conn`` must be in autocommit mode. On plain PostgreSQL nothing is registered (see
    :func:`run_maintenance`) and the result is empty.
    """
    lag = refresh_lag(storage, candle_grace)
    if lag < candle_grace:
        raise PolicyError(
            f"storage.rollup_refresh_lag ({lag}) must be at least the candle grace "
            f"({candle_grace}): a refresh must not reach intervals that may still change"
        )
    if engine_of(conn) != "timescale":
        return []
    changed: list[str] = []
    for relation, field in COMPRESSION:
        after = getattr(storage, field)
        job = _job(conn, "policy_compression", relation)
        if job and _same_intervals(conn, job[1], {"compress_after": after}):
            continue
        conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (relation,))
        conn.execute("SELECT add_compression_policy(%s, compress_after => %s::interval)", (relation, after))
        changed.append(f"compression {relation} after {after}")
    for retention in RETENTION:
        drop_after = getattr(storage, retention.setting)
        job = _job(conn, "policy_retention", retention.relation)
        if drop_after is None:  # kept forever
            if job:
                conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (retention.relation,))
                changed.append(f"retention {retention.relation} removed (kept forever)")
            continue
        if job and _same_intervals(conn, job[1], {"drop_after": drop_after}):
            continue
        conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (retention.relation,))
        conn.execute(
            "SELECT add_retention_policy(%s, drop_after => %s::interval)", (retention.relation, drop_after)
        )
        changed.append(f"retention {retention.relation} after {drop_after}")
    for relation in ROLLUPS:
        wanted = {"start_offset": storage.rollup_refresh_window, "end_offset": lag}
        job = _job(conn, "policy_refresh_continuous_aggregate", relation)
        if job and _same_intervals(conn, job[1], wanted):
            schedule = conn.execute(
                "SELECT schedule_interval = %s::interval FROM timescaledb_information.jobs WHERE job_id = %s",
                (storage.rollup_refresh_every, job[0]),
            ).fetchone()
            if schedule and schedule[0]:
                continue
        conn.execute("SELECT remove_continuous_aggregate_policy(%s, if_exists => true)", (relation,))
        conn.execute(
            "SELECT add_continuous_aggregate_policy(%s, start_offset => %s::interval,"
            " end_offset => %s::interval, schedule_interval => %s::interval)",
            (relation, storage.rollup_refresh_window, lag, storage.rollup_refresh_every),
        )
        changed.append(
            f"refresh {relation} over [now - {storage.rollup_refresh_window}, "
            f"now - {lag}] every {storage.rollup_refresh_every}"
        )
    return changed


def refresh_lag(storage: StorageSettings, candle_grace: timedelta) -> timedelta:
    """The end offset of the refresh jobs: the configured lag, by default the candle grace."""
    return storage.rollup_refresh_lag if storage.rollup_refresh_lag is not None else candle_grace


def project_jobs(conn: psycopg.Connection) -> list[tuple[int, str, str]]:
    """TimescaleDB: (job_id, proc_name, relation) of the project's policies; refreshes first, by level."""
    rows = conn.execute(
        "SELECT job_id, proc_name, hypertable_name FROM timescaledb_information.jobs"
        " WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression',"
        " 'policy_retention')"
    ).fetchall()
    order = {"policy_refresh_continuous_aggregate": 0, "policy_compression": 1, "policy_retention": 2}
    level = {name: i for i, name in enumerate(ROLLUPS)}
    return sorted(((r[0], r[1], r[2]) for r in rows), key=lambda r: (order[r[1]], level.get(r[2], -1), r[0]))


def run_maintenance(conn: psycopg.Connection, storage: StorageSettings) -> list[str]:
    """Run the policies once, now; returns what was done. ``conn`` must be in autocommit mode."""
    done: list[str] = []
    engine = engine_of(conn)
    if engine == "timescale":
        for job_id, proc, relation in project_jobs(conn):
            conn.execute("CALL run_job(%s)", (job_id,))
            done.append(f"{proc} {relation}")
        targets: tuple[Retention, ...] = ()
    else:
        targets = RETENTION
    if conn.execute("SELECT to_regclass('gaps')").fetchone() != (None,):
        targets = (*targets, GAPS_RETENTION)
    for retention in targets:
        age = getattr(storage, retention.setting)
        if age is None:  # kept forever
            continue
        statement = sql.SQL("DELETE FROM {} WHERE {} < now() - %s::interval").format(
            sql.Identifier(retention.relation), sql.Identifier(retention.time_column)
        )
        cursor = conn.execute(statement, (age,))
        done.append(f"deleted {cursor.rowcount} rows of {retention.relation} (older than {_age(age)})")
    return done


def kept_forever(storage: StorageSettings) -> list[str]:
    """The tables no retention applies to (their setting is ``never``)."""
    return [r.relation for r in (*RETENTION, GAPS_RETENTION) if getattr(storage, r.setting) is None]


def retention_jobs(conn: psycopg.Connection, storage: StorageSettings) -> list[str]:
    """TimescaleDB: one line per registered retention job, with how many rows are older than its limit
    now (what its next runs drop, chunk by chunk). What ``python3 tcp.py up`` announces at start."""
    lines = []
    for retention in RETENTION:
        job = _job(conn, "policy_retention", retention.relation)
        if job is None:
            continue
        age = getattr(storage, retention.setting) or job[1].get("drop_after")
        statement = sql.SQL("SELECT count(*) FROM {} WHERE {} < now() - %s::interval").format(
            sql.Identifier(retention.relation), sql.Identifier(retention.time_column)
        )
        row = conn.execute(statement, (age,)).fetchone()
        older = row[0] if row else 0
        lines.append(
            f"job {job[0]} drops {retention.relation} older than {_age(age)}: {older} rows older now"
        )
    return lines


def retention_summary(conn: psycopg.Connection, storage: StorageSettings) -> list[str]:
    """What retention does to this database, for the start of ``python3 tcp.py up``: the tables kept
    forever, and on TimescaleDB each registered retention job (plain PostgreSQL reports its deletions
    from :func:`run_maintenance`)."""
    kept = kept_forever(storage)
    lines = [f"none for {', '.join(kept)} (kept forever)"] if kept else []
    if engine_of(conn) == "timescale":
        lines += retention_jobs(conn, storage)
    return lines


def _age(age: object) -> str:
    if isinstance(age, timedelta) and not age.seconds and not age.microseconds:
        return f"{age.days} days"
    return str(age)


def refresh_rollups(
    conn: psycopg.Connection, start: datetime | None = None, end: datetime | None = None
) -> None:
    """Bring every higher timeframe up to date for 1m candles closing in ``[start, end]`` (None: unbounded).

    TimescaleDB: ``refresh_continuous_aggregate`` level by level (``conn`` must be in autocommit mode);
    plain PostgreSQL: ``refresh_rollups()`` (the triggers keep the tables current; this is for data loaded
    with triggers disabled). Either way only sealed intervals become visible.
    """
    if engine_of(conn) == "timescale":
        # A bucket starts 1 minute after its interval opens and ends 1 minute after it closes; the window
        # starts one width early so that the interval holding ``start`` is inside it whole.
        window_end = end + timedelta(minutes=1) if end is not None else None
        for relation, width in zip(ROLLUPS, WIDTHS, strict=True):
            window_start = start - width if start is not None else None
            conn.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
                (relation, window_start, window_end),
            )
    else:
        conn.execute("SELECT refresh_rollups(%s::timestamptz, %s::timestamptz)", (start, end))


def refresh_after_load(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    """Make every higher timeframe cover 1m candles just loaded (a replay) closing in ``[start, end]``,
    however old: TimescaleDB refreshes the continuous aggregates over the range (its refresh jobs only
    look back ``rollup_refresh_window``); plain PostgreSQL already rolled them up in the writing
    transactions, so only the ranges still pending are flushed. ``conn`` must be in autocommit mode."""
    if engine_of(conn) == "timescale":
        refresh_rollups(conn, start, end)
    else:
        refresh_rollups(conn, end, end)


def main(argv: list[str] | None = None) -> int:
    from configs.errors import run_cli

    parser = argparse.ArgumentParser(prog="python -m sql.policies", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="overrides DATABASE_URL")
    parser.add_argument("--run", action="store_true", help="also run retention (and compression) once, now")
    parser.add_argument(
        "--refresh-all",
        action="store_true",
        help="recompute every higher timeframe over the whole history (after a backfill)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(argv)
    return run_cli(lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    from configs.errors import UserError, check_database
    from configs.logs import configure_logging
    from configs.settings import load_settings

    settings = load_settings()
    configure_logging(settings, "policies", level=logging.INFO)
    url = args.database_url or (settings.database_url.get_secret_value() if settings.database_url else None)
    if url is None:
        raise UserError(
            "DATABASE_URL is not set: there is no database to apply the policies to.",
            "Set DATABASE_URL (or --database-url) to the database python3 tcp.py up uses.",
        )
    check_database(
        url,
        "--database-url" if args.database_url else "DATABASE_URL",
        settings.database.connect_timeout_seconds,
        embedded=False,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        for change in apply_policies(conn, settings.storage, settings.candle_grace):
            print(f"policy: {change}")
        for line in retention_summary(conn, settings.storage):
            print(f"retention: {line}")
        if engine_of(conn) == "postgres" and not args.run:
            print("plain PostgreSQL: no jobs to register; retention runs with --run (schedule it)")
        if args.refresh_all:
            refresh_rollups(conn)
            print("rollups refreshed")
        if args.run:
            for line in run_maintenance(conn, settings.storage):
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
