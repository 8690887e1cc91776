"""The run command: bring up the whole system on embedded defaults and stop it cleanly.

``python -m app.stack up`` (what ``python3 tcp.py up`` runs):
1. loads settings once (a bad value stops here, naming the field);
2. starts an embedded PostgreSQL and Redis under ``data_dir`` unless ``DATABASE_URL``/``REDIS_URL`` are
   set;
3. applies the migrations and the storage policies;
4. starts the services (the live flow ``python -m bytewax.run flows.okx`` and the dashboard, as they
   become available) as child processes with the resolved URLs in their environment; with ``--control``
   the dashboard also gets the control switch and the URL of the control role (sql/roles.py), with which
   it creates and changes the paper-trading bots and user indicators (docs/bots.md);
5. keeps them running (app/supervisor.py) and says how they do (app/status.py);
6. on Ctrl-C or SIGTERM stops the services, then the embedded servers, and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from app.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError
from app.embedded_redis import EmbeddedRedis
from app.resources import check_tapes, load_indicators
from app.services import CONTROL_URL_ENV, DEMO_TAPE, services_for, start_simulators
from app.status import WATCH_EVERY, StatusWatch
from app.supervisor import Service, Supervisor
from configs import errors
from configs.logs import configure_logging
from configs.selection import parse_selection
from configs.settings import ConfigError, Settings, load_settings
from sql.migrate import MigrationError, migrate_with_report
from sql.policies import PolicyError, apply_policies, engine_of, run_maintenance
from sql.roles import (
    CONTROLLER,
    READER,
    ControllerUnavailable,
    ReaderUnavailable,
    ensure_controller,
    ensure_reader,
)

MAINTENANCE_EVERY = 3600.0  # seconds between retention runs on plain PostgreSQL (no job scheduler)

log = logging.getLogger("tcp.stack")


class _Stop(BaseException):
    """Ctrl-C or SIGTERM while starting (a BaseException: no ``except Exception`` on the way swallows it)."""


class _StopRequest:
    """The signal handler of ``up``. While starting, a signal interrupts whatever runs; once the services
    run it only sets :attr:`signal_name`, which the main loop checks: a signal landing inside a database
    call or a restart would otherwise be swallowed by the library it interrupts, or cut the restart
    half-way."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.running = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        if not self.running:
            raise _Stop(self.signal_name)


def _applied(name: str, seconds: float) -> None:
    print(f"  applied {name} ({seconds:.2f} s)", flush=True)


def _dashboard_url(settings: Settings, url: str) -> str:
    """The URL the dashboard reads with: ``DASHBOARD__DATABASE_URL``, else the read-only role ``up``
    keeps (sql/roles.py), else, when the server refuses to create it, the flow's own in read-only
    sessions (said so)."""
    if settings.dashboard.database_url is not None:
        return settings.dashboard.database_url.get_secret_value()
    try:
        return ensure_reader(url, settings.data_dir)
    except ReaderUnavailable as error:
        print(
            f"Dashboard: reads with the flow's role in read-only sessions: the role {READER} could not "
            f"be created ({error}); set DASHBOARD__DATABASE_URL to a SELECT-only role",
            flush=True,
        )
        return url


def _control_url(settings: Settings, url: str) -> str | None:
    """The URL of the control role ``up --control`` keeps (sql/roles.py); ``None`` (said so) when the
    server refuses to create it: the dashboard then shows control as unavailable."""
    try:
        return ensure_controller(url, settings.data_dir)
    except ControllerUnavailable as error:
        print(
            f"Control: unavailable: the role {CONTROLLER} could not be created ({error}); "
            "the dashboard's bots and indicators stay read-only",
            flush=True,
        )
        return None


def _apply_storage_policies(settings: Settings, url: str) -> bool:
    """Register compression/retention/refresh jobs (TimescaleDB) or run retention once (plain
    PostgreSQL, which has no scheduler); returns whether the engine is plain PostgreSQL."""
    import psycopg

    from sql.policies import retention_summary

    with psycopg.connect(url, autocommit=True) as conn:
        changed = apply_policies(conn, settings.storage, settings.candle_grace)
        plain = engine_of(conn) != "timescale"
        retention = retention_summary(conn, settings.storage)
    if changed:
        print(f"Storage policies: {', '.join(changed)}", flush=True)
    for line in retention:
        print(f"Retention: {line}", flush=True)
    if plain:
        _maintain(settings, url, announce=True)
    return plain


def _maintain(settings: Settings, url: str, announce: bool = False) -> None:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            done = run_maintenance(conn, settings.storage)
        log.info("storage maintenance: %s", "; ".join(done) or "nothing to do")
        for line in done:  # every deletion is announced: all at start, then those that deleted rows
            if line.startswith("deleted") and (announce or not line.startswith("deleted 0 ")):
                print(f"Retention: {line}", flush=True)
    except psycopg.Error as error:
        log.warning("storage maintenance failed: %s", error)


@dataclass
class _Running:
    """What ``up`` has started so far; :meth:`close` stops it in reverse order."""

    database: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    services: list[Service] = field(default_factory=list)
    supervisor: Supervisor | None = None

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
        if self.supervisor is not None:
            self.supervisor.close()
        if self.redis is not None:
            self.redis.stop()
            print("Embedded Redis stopped.", flush=True)
        if self.database is not None:
            self.database.stop()
            print("Embedded PostgreSQL stopped.", flush=True)


def up(settings: Settings, once: bool, offline_tapes: list[Path] | None = None, control: bool = False) -> int:
    """Run the system until Ctrl-C or SIGTERM (0), or a problem a user can fix (2, said in one line);
    ``control``: the dashboard may change the paper-trading bots and user indicators."""
    stop = _StopRequest()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    running = _Running()
    try:
        return _run(settings, once, offline_tapes, stop, running, control)
    except _Stop as stopped:
        print(f"\n{stopped}: stopping ...", flush=True)
        return 0
    except (EmbeddedPostgresError, MigrationError, PolicyError, ConfigError) as error:
        errors.report(errors.UserError(str(error)), error)
        return 2
    except Exception as error:  # what else a user can fix is named plainly (configs/errors.py); bugs raise
        if (problem := errors.explain(error)) is None:
            raise
        errors.report(problem, error)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        running.close()


def _run(
    settings: Settings,
    once: bool,
    offline_tapes: list[Path] | None,
    stop: _StopRequest,
    running: _Running,
    control: bool = False,
) -> int:
    """``up``'s steps in order, each adding what it starts to ``running``; returns the exit code."""
    url = _start_database(settings, running)
    redis_url = _start_redis(settings, running)
    plain = _prepare_database(settings, url)
    shown = errors.redact_url(url)
    print(f'Database: {shown}\n  psql "{shown}"\nRedis: {errors.redact_url(redis_url)}', flush=True)
    if once:
        return 0
    extra_env = _add_services(settings, url, redis_url, offline_tapes, running, control)
    started = datetime.now(UTC)
    for service in running.services:
        if service.process is None:
            service.start()
    stop.running = True
    _say_up(settings, running.services)
    selection = parse_selection(extra_env.get("INSTRUMENTS", ",".join(settings.instruments)))
    instruments = [(followed.exchange, followed.instrument) for followed in selection]
    watch = StatusWatch(url, instruments, settings.data_dir / "spool", started, bool(offline_tapes), say=_say)
    running.supervisor = Supervisor(running.services, settings.supervisor, url, say=_say)
    _supervise(settings, url, plain, stop, watch, running.supervisor)
    print(f"\n{stop.signal_name}: stopping ...", flush=True)
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _start_database(settings: Settings, running: _Running) -> str:
    """``DATABASE_URL``, else an embedded PostgreSQL under ``data_dir`` started for this run."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    running.database = EmbeddedPostgres(settings.data_dir / "pg")
    url = running.database.start()
    print(
        f"Embedded PostgreSQL ready in {running.database.started_in_seconds:.2f} s "
        f"(data in {running.database.data_dir})",
        flush=True,
    )
    return url


def _start_redis(settings: Settings, running: _Running) -> str:
    """``REDIS_URL``, else an embedded Redis under ``data_dir`` started for this run."""
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    running.redis = EmbeddedRedis(settings.data_dir / "redis")
    url = running.redis.start()
    print(f"Embedded Redis ready in {running.redis.started_in_seconds:.2f} s", flush=True)
    return url


def _prepare_database(settings: Settings, url: str) -> bool:
    """Apply the migrations and the storage policies; returns whether the engine is plain PostgreSQL."""
    report = migrate_with_report(url, settings.database.timescaledb, progress=_applied)
    print(report.summary(), flush=True)
    return _apply_storage_policies(settings, url)


def _add_services(
    settings: Settings,
    url: str,
    redis_url: str,
    offline_tapes: list[Path] | None,
    running: _Running,
    control: bool = False,
) -> dict[str, str]:
    """Add the services to ``running`` (the simulator, started now, first); returns the environment they
    share beyond ``DATABASE_URL``."""
    extra_env: dict[str, str] = {"REDIS_URL": redis_url}
    if offline_tapes:
        simulators, simulator_env = start_simulators(offline_tapes, url)
        extra_env |= simulator_env
        running.services += simulators
    control_url = _control_url(settings, url) if control else None
    running.services += services_for(
        settings, url, extra_env, _dashboard_url(settings, url), control, control_url
    )
    return extra_env


def _say_up(settings: Settings, services: list[Service]) -> None:
    dashboard = next((s for s in services if s.name == "dashboard"), None)
    if dashboard is not None:
        print(f"Dashboard: http://{settings.dashboard.host}:{settings.dashboard.port}", flush=True)
    if dashboard is not None and CONTROL_URL_ENV in dashboard.env:
        print(
            f"Control: on: the dashboard creates and changes bots and user indicators (role {CONTROLLER}); "
            "bots are paper trading only, no order ever leaves this machine",
            flush=True,
        )
    if settings.metrics.port and any(s.name == "flow" for s in services):
        print(f"Metrics: http://{settings.metrics.host}:{settings.metrics.port}/metrics", flush=True)
    running = ", ".join(s.name for s in services) or "the database only"
    print(f"Up: {running}. Ctrl-C stops everything.", flush=True)


def _supervise(
    settings: Settings, url: str, plain: bool, stop: _StopRequest, watch: StatusWatch, supervisor: Supervisor
) -> None:
    """The main loop, until a signal: keep the services running, say the status, and on plain PostgreSQL
    run the retention hourly."""
    next_maintenance = time.monotonic() + MAINTENANCE_EVERY
    next_watch = time.monotonic() + WATCH_EVERY
    while stop.signal_name is None:
        if plain and time.monotonic() >= next_maintenance:
            _maintain(settings, url)
            next_maintenance = time.monotonic() + MAINTENANCE_EVERY
        if time.monotonic() >= next_watch:
            watch.poll(datetime.now(UTC))
            next_watch = time.monotonic() + WATCH_EVERY
        supervisor.check()
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 tcp.py")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run the whole system until Ctrl-C")
    up_parser.add_argument(
        "--once",
        action="store_true",
        help="start the database and apply migrations, then stop (a health check)",
    )
    up_parser.add_argument(
        "--offline",
        nargs="*",
        type=Path,
        metavar="TAPE",
        help="run against the local OKX simulator replaying these tapes from now "
        f"(default: {DEMO_TAPE.name}, real Binance trades, which the local Binance simulator replays too)",
    )
    up_parser.add_argument(
        "--control",
        action="store_true",
        help="let the dashboard create, start, pause, stop and delete paper-trading bots and add or remove "
        "user indicators (docs/bots.md); without it the dashboard only reads",
    )
    up_parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(argv)
    if args.debug:
        os.environ[errors.DEBUG_ENV] = "1"  # the services show theirs too

    def start() -> int:
        """Everything a user can get wrong is checked here, before anything starts."""
        settings = load_settings()
        load_indicators(settings)  # fail at start, naming the field, rather than in the flow
        configure_logging(settings, "up")
        offline = None if args.offline is None else (args.offline or [DEMO_TAPE])
        check_tapes(offline or [], "up --offline")
        if settings.database_url is not None:
            errors.check_database(
                settings.database_url.get_secret_value(),
                "DATABASE_URL",
                settings.database.connect_timeout_seconds,
            )
        if settings.redis_url is not None:
            errors.check_redis(settings.redis_url.get_secret_value(), "REDIS_URL")
        if not args.once:
            errors.check_port_free(settings.dashboard.host, settings.dashboard.port, "DASHBOARD__PORT")
        return up(settings, once=args.once, offline_tapes=offline, control=args.control)

    return errors.run_cli(start, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
