"""What the flow entry points and the run command resolve: settings, the database and Redis to use
(given, or the embedded servers), the recovery store, the sinks of a real run, the tapes named."""

from __future__ import annotations

import atexit
import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from bytewax.recovery import init_db_dir
from pydantic import ValidationError

from app.cluster import cluster_place
from app.embedded_postgres import EmbeddedPostgres
from app.embedded_redis import EmbeddedRedis
from configs.errors import UserError, check_database, check_redis, exit_on_user_error, yaml_problem
from configs.indicators import IndicatorsConfig, load_indicator_config
from configs.logs import configure_logging
from configs.settings import ConfigError, Settings, describe_validation_error, load_settings
from connectors.database import DatabaseSink, drain_spool
from connectors.health_table import HealthTableSink
from connectors.redis_fanout import RedisSink
from flows.graph import FlowSinks
from sql.migrate import migrate

if TYPE_CHECKING:
    from connectors.tape import TapeSummary

log = logging.getLogger("tcp.flows")


def settings_or_exit() -> tuple[Settings, IndicatorsConfig]:
    """Load settings (and the indicator configuration) once at a flow's entry point; a bad value
    stops it, naming the field (exit code 2; ``TCP_DEBUG=1`` also shows the traceback)."""
    with exit_on_user_error():
        settings = load_settings()
        indicators = load_indicators(settings)
    configure_logging(settings, "flow")
    return settings, indicators


def load_indicators(settings: Settings) -> IndicatorsConfig:
    """The indicator/strategy configuration named by the settings; raises ConfigError naming the field."""
    path = settings.indicators_config
    try:
        return load_indicator_config(path)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, f"indicator configuration {path}")) from None
    except yaml.YAMLError as error:
        raise ConfigError(
            f"invalid indicator configuration:\n  {yaml_problem(error, path)}\n  Fix the YAML there."
        ) from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"invalid indicator configuration {path}: {error}") from None


def database_url(settings: Settings) -> str:
    """``DATABASE_URL``; else the embedded server the run command started; else start one for this
    process (and stop it at exit). The schema is brought up to date in the last two cases. A database
    that cannot be used stops the flow with one line naming the problem and the fix (exit code 2)."""
    with exit_on_user_error():
        return _database_url(settings)


def _database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        given = settings.database_url.get_secret_value()
        check_database(given, "DATABASE_URL", settings.database.connect_timeout_seconds)
        return given
    url = _embedded_url(EmbeddedPostgres, settings.data_dir / "pg", "PostgreSQL")
    migrate(url, settings.database.timescaledb)
    return url


def redis_url(settings: Settings) -> str:
    """``REDIS_URL``; else the embedded Redis the run command started; else start one for this
    process (and stop it at exit). A Redis that cannot be used stops the flow with one line naming the
    problem and the fix (exit code 2)."""
    with exit_on_user_error():
        return _redis_url(settings)


def _redis_url(settings: Settings) -> str:
    if settings.redis_url is not None:
        given = settings.redis_url.get_secret_value()
        check_redis(given, "REDIS_URL")
        return given
    return _embedded_url(EmbeddedRedis, settings.data_dir / "redis", "Redis")


def _embedded_url(server_type: type[EmbeddedPostgres | EmbeddedRedis], data_dir: Path, name: str) -> str:
    """The embedded server running on ``data_dir`` (the run command's), else one started for this process
    and stopped at its exit; but never started by one process of a cluster (:func:`refuse_in_cluster`)."""
    url = server_type.running_url(data_dir) if data_dir.exists() else None
    if url is None:
        refuse_in_cluster(name)
        server = server_type(data_dir)
        url = server.start()
        atexit.register(server.stop)
        log.info("started an embedded %s for this flow at %s", name, url)
    return url


def refuse_in_cluster(name: str) -> None:
    """A process of a cluster (``-i``/``-a``) does not start an embedded server: raises ``UserError``.

    The embedded servers listen on a Unix socket of one machine and keep their data in this process's
    DATA_DIR: processes on other hosts cannot reach them, and processes that each started their own
    would write to separate databases, each holding only its share of the instruments. Starting one in
    process 0 alone would not help the other hosts either. So a cluster shares servers it is given."""
    place = cluster_place()
    if place.clustered:
        variable = "DATABASE_URL" if name == "PostgreSQL" else "REDIS_URL"
        raise UserError(
            f"{variable} is not set, and process {place.process} of a cluster of {place.processes} does not "
            f"start an embedded {name}: the processes must share one.",
            f"Set {variable} on every process to a {name} they all reach (docs/scaling.md).",
        )


def recovery_env(settings: Settings) -> dict[str, str]:
    """The environment that turns Bytewax recovery on for ``python -m bytewax.run`` (``-r/-s/-b``), with
    its store initialised under ``data_dir/recovery``; empty when ``recovery.enabled`` is off."""
    recovery = settings.recovery
    if not recovery.enabled:
        return {}
    directory = Path(settings.data_dir) / "recovery"
    if not any(directory.glob("part-*.sqlite3")):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, recovery.partitions)
    return {
        "BYTEWAX_RECOVERY_DIRECTORY": str(directory),
        "BYTEWAX_SNAPSHOT_INTERVAL": str(int(recovery.snapshot_interval.total_seconds())),
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": str(int(recovery.backup_interval.total_seconds())),
    }


def production_sinks(settings: Settings, url: str | None = None) -> FlowSinks:
    """The sinks of a real run: the database (``url``, default :func:`database_url`), the collector
    health table and the Redis fan-out."""
    url = url or database_url(settings)
    timeout = settings.database.connect_timeout_seconds
    with exit_on_user_error():
        database = database_sink(settings, url)
    return FlowSinks(
        database=database, fanout=[RedisSink(redis_url(settings))], health=[HealthTableSink(url, timeout)]
    )


def database_sink(settings: Settings, url: str) -> DatabaseSink:
    """The database sink, once what earlier runs spooled for this database is written (so a flow that
    resumes from the database starts after it)."""
    spool = Path(settings.data_dir) / "spool"
    timeout = settings.database.connect_timeout_seconds
    with spool_drain_lock(spool):
        drain_spool(url, spool, connect_timeout=timeout, contract_values=settings.contract_values)
    return DatabaseSink(
        url,
        spool_dir=spool,
        connect_timeout=timeout,
        spool_max_mb=settings.database.spool_max_mb,
        contract_values=settings.contract_values,
    )


@contextmanager
def spool_drain_lock(spool: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``spool`` while draining it: the processes of a cluster that share a
    DATA_DIR each drain at start, one after the other, so a batch is never written by two at once (the
    second finds it gone). Each worker spools into its own directory (named by its cluster-wide index)."""
    spool.mkdir(parents=True, exist_ok=True)
    with open(spool / ".drain.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_tapes(tapes: list[Path], source: str) -> list[TapeSummary]:
    """Each tape is a readable OKX trades CSV; raises :class:`UserError` naming ``source`` and the file.
    Returns what the check read of each (``connectors.tape_survey``), so a replay does not read it again."""
    from connectors.tape import TapeError
    from connectors.tape_survey import survey_tape

    fix = "Name an OKX trades CSV tape (bundled ones: tests/data/tapes)."
    summaries = []
    for tape in tapes:
        if not tape.exists():
            raise UserError(f"{source}: tape {tape} does not exist.", fix)
        if not tape.is_file():
            raise UserError(f"{source}: tape {tape} is not a file.", fix)
        try:
            summaries.append(survey_tape(tape))
        except TapeError as error:
            raise UserError(f"{source}: {error}", fix) from None
        except OSError as error:
            reason = error.strerror or error
            raise UserError(f"{source}: tape {tape} cannot be read ({reason}).", fix) from None
    return summaries
