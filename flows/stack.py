"""The run command: bring up the whole system on embedded defaults and stop it cleanly.

``python -m flows.stack up`` (what ``python3 tcp.py up`` runs):
1. loads settings once (a bad value stops here, naming the field);
2. starts an embedded PostgreSQL under ``data_dir`` unless ``DATABASE_URL`` is set;
3. applies the migrations;
4. starts the services (the live flow ``python -m bytewax.run flows.okx`` and the dashboard, as they
   become available) as child processes with the resolved URLs in their environment;
5. on Ctrl-C or SIGTERM stops the services, then the embedded database, and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from configs import errors
from configs.settings import ConfigError, Settings, load_settings
from connectors.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError
from connectors.embedded_redis import EmbeddedRedis
from flows.runtime import check_tapes, load_indicators, recovery_env
from flows.status import WATCH_EVERY, StatusWatch
from flows.supervisor import Service, Supervisor
from sql.migrate import MigrationError, migrate_with_report
from sql.policies import PolicyError, apply_policies, engine_of, run_maintenance
from sql.roles import READER, ReaderUnavailable, ensure_reader

MAINTENANCE_EVERY = 3600.0  # seconds between retention runs on plain PostgreSQL (no job scheduler)

log = logging.getLogger("tcp.stack")

TAPES = Path(__file__).resolve().parent.parent / "tests" / "data" / "tapes"
DEMO_TAPE = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"


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


def start_simulator(tapes: list[Path], database_url: str) -> tuple[Service, dict[str, str]]:
    """Start the local OKX simulator on the tapes (rebased to now); returns it and the settings that
    point the flow at it. The simulated market continues the stored one: its trade ids follow the newest
    stored id of each instrument and its trades come after that trade's time (docs/okx-simulator.md).
    A restart keeps its port and continues from what is stored then."""
    from connectors.resume import load_stored_ends
    from connectors.tape import tape_instruments

    instruments = sorted({symbol for tape in tapes for symbol in tape_instruments(tape)})
    stored = load_stored_ends(database_url, "okx", instruments).last_trades

    def argv(port: int) -> list[str]:
        ends = stored if port == 0 else load_stored_ends(database_url, "okx", instruments).last_trades
        args = [
            sys.executable,
            "-m",
            "connectors.okx.simulator",
            "--rebase-now",
            "--start-offset",
            "60",
            "--port",
            str(port),
        ]
        for tape in tapes:
            args += ["--tape", str(tape)]
        for symbol, (trade_id, ms) in ends.items():
            args += ["--continue-after", f"{symbol}={trade_id}@{ms}"]
        return args

    simulator = Service("okx-simulator", argv(0))
    simulator.start(stdout=subprocess.PIPE)
    assert simulator.process is not None and simulator.process.stdout is not None
    line = simulator.process.stdout.readline()
    if not line:
        raise RuntimeError("the OKX simulator exited before it was ready")
    ready = json.loads(line)
    port = urlsplit(ready["rest"]).port or 0
    simulator.prepare = lambda: argv(port)
    simulator.stdout = subprocess.DEVNULL
    env = {
        "OKX_WS_URL": ready["ws_public"],
        "OKX_REST_URL": ready["rest"],
        "INSTRUMENTS": ",".join(instruments),
    }
    print(
        f"Offline: OKX simulator at {ready['ws_public']} replaying {', '.join(instruments)} from now",
        flush=True,
    )
    for symbol, (trade_id, _) in stored.items():
        print(f"Offline: {symbol} continues the stored market (trade ids from {trade_id + 1})", flush=True)
    return simulator, env


def dashboard_argv(host: str, port: int) -> list[str]:
    """How the dashboard is served: by the run command, and by the tests and benchmarks."""
    return [
        sys.executable,
        "-m",
        "panel",
        "serve",
        "dashboards/app.py",
        "--address",
        host,
        "--port",
        str(port),
        "--allow-websocket-origin",
        f"{host}:{port}",
    ]


def services_for(
    settings: Settings,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    dashboard_url: str | None = None,
) -> list[Service]:
    """The processes that make up the running system, given the resolved database URL (and the
    read-only one the dashboard reads with)."""
    env = {"DATABASE_URL": database_url, **(extra_env or {})}
    services = []
    if importlib.util.find_spec("flows.okx") is not None:
        services.append(
            Service(
                "flow", [sys.executable, "-m", "bytewax.run", "flows.okx"], {**env, **recovery_env(settings)}
            )
        )
    if importlib.util.find_spec("dashboards.app") is not None:
        dash = settings.dashboard
        services.append(
            Service(
                "dashboard",
                dashboard_argv(dash.host, dash.port),
                {**env, "DATABASE_URL": dashboard_url or database_url},
            )
        )
    return services


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


def up(settings: Settings, once: bool, offline_tapes: list[Path] | None = None) -> int:
    stop = _StopRequest()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    embedded: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    services: list[Service] = []
    supervisor: Supervisor | None = None
    try:
        if settings.database_url is None:
            embedded = EmbeddedPostgres(settings.data_dir / "pg")
            url = embedded.start()
            print(
                f"Embedded PostgreSQL ready in {embedded.started_in_seconds:.2f} s "
                f"(data in {embedded.data_dir})",
                flush=True,
            )
        else:
            url = settings.database_url.get_secret_value()
        if settings.redis_url is None:
            embedded_redis = EmbeddedRedis(settings.data_dir / "redis")
            redis_url = embedded_redis.start()
            print(f"Embedded Redis ready in {embedded_redis.started_in_seconds:.2f} s", flush=True)
        else:
            redis_url = settings.redis_url.get_secret_value()
        report = migrate_with_report(url, settings.database.timescaledb, progress=_applied)
        print(report.summary(), flush=True)
        plain = _apply_storage_policies(settings, url)
        shown = errors.redact_url(url)
        print(f'Database: {shown}\n  psql "{shown}"\nRedis: {errors.redact_url(redis_url)}', flush=True)
        if once:
            return 0
        extra_env: dict[str, str] = {"REDIS_URL": redis_url}
        if offline_tapes:
            simulator, simulator_env = start_simulator(offline_tapes, url)
            extra_env |= simulator_env
            services.append(simulator)
        services += services_for(settings, url, extra_env, _dashboard_url(settings, url))
        started = datetime.now(UTC)
        for service in services:
            if service.process is None:
                service.start()
        stop.running = True
        running = ", ".join(s.name for s in services) or "the database only"
        if any(s.name == "dashboard" for s in services):
            print(f"Dashboard: http://{settings.dashboard.host}:{settings.dashboard.port}", flush=True)
        print(f"Up: {running}. Ctrl-C stops everything.", flush=True)
        instruments = extra_env.get("INSTRUMENTS", ",".join(settings.instruments)).split(",")
        watch = StatusWatch(
            url,
            instruments,
            settings.data_dir / "spool",
            started,
            bool(offline_tapes),
            say=lambda line: print(line, flush=True),
        )
        supervisor = Supervisor(services, settings.supervisor, url, say=lambda line: print(line, flush=True))
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
        print(f"\n{stop.signal_name}: stopping ...", flush=True)
        return 0
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
        for service in reversed(services):
            service.stop()
        if supervisor is not None:
            supervisor.close()
        if embedded_redis is not None:
            embedded_redis.stop()
            print("Embedded Redis stopped.", flush=True)
        if embedded is not None:
            embedded.stop()
            print("Embedded PostgreSQL stopped.", flush=True)


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
        f"(default: {DEMO_TAPE.name})",
    )
    up_parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(argv)
    if args.debug:
        os.environ[errors.DEBUG_ENV] = "1"  # the services show theirs too

    def start() -> int:
        """Everything a user can get wrong is checked here, before anything starts."""
        settings = load_settings()
        load_indicators(settings)  # fail at start, naming the field, rather than in the flow
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
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
        return up(settings, once=args.once, offline_tapes=offline)

    return errors.run_cli(start, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
