"""Failures a user can fix, told in one or two lines: what is wrong, then how to fix it.

Every entry point (``tcp.py up``/``migrate``/``sim``, the ``bytewax.run`` flows, ``sql.policies``) runs
through :func:`run_cli` (or :func:`exit_on_user_error` where it cannot return a code): a known failure
prints ``error: <problem>`` and ``  <fix>`` on stderr and exits 2, without a traceback; anything else is
a bug and raises. ``--debug`` (or ``TCP_DEBUG=1``) also prints the traceback.

The checks here (:func:`check_database`, :func:`check_redis`, :func:`check_port_free`) run at the start
so that a bad ``DATABASE_URL``/``REDIS_URL`` or a busy port is named before anything else starts.
Passwords in URLs are never printed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEBUG_ENV = "TCP_DEBUG"
USER_ERROR_EXIT = 2


class UserError(Exception):
    """A failure the user can fix: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  {self.fix}" if self.fix else self.problem


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` was given or ``TCP_DEBUG`` is set to a true value."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def run_cli(main: Callable[[], int], debug: bool = False) -> int:
    """Run an entry point's ``main``; a known failure is printed plainly and gives exit code 2."""
    try:
        return main()
    except Exception as error:
        problem = explain(error)
        if problem is None:
            raise
        report(problem, error, debug)
        return USER_ERROR_EXIT


@contextlib.contextmanager
def exit_on_user_error(debug: bool = False) -> Iterator[None]:
    """For entry points that cannot return a code (a ``bytewax.run`` flow module's ``flow``): a known
    failure inside is printed plainly and exits with code 2."""
    try:
        yield
    except Exception as error:
        problem = explain(error)
        if problem is None:
            raise
        report(problem, error, debug)
        raise SystemExit(USER_ERROR_EXIT) from None


def report(problem: UserError, error: BaseException, debug: bool = False) -> None:
    if debug_requested(debug):
        traceback.print_exception(error)
    print(f"error: {problem}", file=sys.stderr, flush=True)


def _is(error: BaseException, module: str, name: str) -> bool:
    """``error`` is an instance of ``module.name``, looked up only if that module is loaded (so this
    module imports none of the systems whose errors it explains)."""
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    if isinstance(cls, type) and isinstance(error, cls):
        return True
    # the module run as a script (``python -m sql.migrate``) defines its classes in ``__main__``
    return any(c.__name__ == name and c.__module__ == "__main__" for c in type(error).__mro__)


def explain(error: BaseException) -> UserError | None:
    """The plain reading of a known failure; ``None`` for anything else (a bug, shown with its traceback)."""
    if isinstance(error, UserError):
        return error
    if _is(error, "configs.settings", "ConfigError"):
        return UserError(str(error))
    if _is(error, "sql.migrate", "MigrationError") or _is(error, "sql.policies", "PolicyError"):
        return UserError(str(error))
    if _is(error, "yaml", "YAMLError"):
        return UserError(yaml_problem(error), "Fix the YAML syntax there.")
    if _is(error, "connectors.tape", "TapeError"):
        return UserError(f"tape: {error}", "Name an OKX trades CSV tape (bundled ones: tests/data/tapes).")
    if _is(error, "app.embedded_postgres", "EmbeddedPostgresError"):
        return UserError(str(error))
    if _is(error, "app.embedded_redis", "EmbeddedRedisError"):
        return UserError(str(error))
    # connection-level failures only: any other database or Redis error is a bug, shown with its traceback
    if _is(error, "psycopg", "OperationalError") or "must be preloaded" in str(error):
        return database_problem(error)
    if _is(error, "redis", "ConnectionError") or _is(error, "redis", "TimeoutError"):
        return redis_problem(error)
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        name = error.filename or "a file"
        return UserError(f"{name}: {error.strerror or error}", "Check the path.")
    return None


# --- YAML -------------------------------------------------------------------------------------------


def yaml_problem(error: BaseException, path: str | Path | None = None) -> str:
    """``FILE, line L, column C: PROBLEM`` for a YAML syntax error."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = str(path or (getattr(mark, "name", None) if mark is not None else None) or "YAML file")
    if mark is not None:
        where += f", line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {problem} (YAML syntax error)"


# --- PostgreSQL -------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(the URL, which cannot be parsed)"
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _scrub(text: str, url: str | None) -> str:
    """``text`` without the URL's password (libpq may echo parts of a URL it cannot parse)."""
    if url:
        with contextlib.suppress(ValueError):
            password = urlsplit(url).password
            if password:
                text = text.replace(password, "***")
    return text


def _pg_target(url: str | None) -> str:
    if not url:
        return "the database server"
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
    except Exception:  # a URL libpq cannot parse: the caller reports that
        return "the database server"
    host = str(info.get("host") or "localhost").split(",")[0]
    port = str(info.get("port") or "5432").split(",")[0]
    return f"the socket in {host}" if host.startswith("/") else f"{host}:{port}"


_CONNECT_REASONS = (  # (text in libpq's message, short reason, fix); the first match wins
    ("connection refused", "connection refused", "Is {server} running there?"),
    ("no such file or directory", "no server on that socket", "Is {server} running there?"),
    ("failed to resolve host", "unknown host", "Check the host name."),
    ("could not translate host name", "unknown host", "Check the host name."),
    ("name or service not known", "unknown host", "Check the host name."),
    ("timeout expired", "no answer in time", "Is the host reachable (firewall, VPN)?"),
    ("timed out", "no answer in time", "Is the host reachable (firewall, VPN)?"),
    ("no route to host", "no route to host", "Is the host reachable (firewall, VPN)?"),
    ("network is unreachable", "network unreachable", "Is the host reachable (firewall, VPN)?"),
)


def database_problem(
    error: BaseException, url: str | None = None, source: str = "the database", embedded: bool = True
) -> UserError:
    """A psycopg failure told plainly; ``source`` names where the URL came from (``DATABASE_URL``)."""
    message = _scrub(str(error).strip(), url)
    low = message.lower()
    target = _pg_target(url)
    hint = " Unset DATABASE_URL to use the embedded one." if embedded and source == "DATABASE_URL" else ""
    if 'extension "timescaledb" must be preloaded' in low:
        return timescaledb_not_preloaded()
    if match := re.search(r'password authentication failed for user "([^"]*)"', message):
        return UserError(
            f'{source}: PostgreSQL at {target} refused the password of user "{match[1]}".',
            f"Check the user and password in {source}.",
        )
    if "no password supplied" in low:
        return UserError(
            f"{source}: PostgreSQL at {target} wants a password and {source} has none.",
            f"Put it in {source} (postgresql://USER:PASSWORD@HOST:PORT/DATABASE).",
        )
    if match := re.search(r'role "([^"]*)" does not exist', message):
        return UserError(
            f'{source}: PostgreSQL at {target} has no user "{match[1]}".',
            f"Check the user name in {source}, or create the role (CREATE ROLE ... LOGIN).",
        )
    if match := re.search(r'database "([^"]*)" does not exist', message):
        return UserError(
            f'{source}: PostgreSQL at {target} has no database "{match[1]}".',
            f"Create it (createdb {match[1]}) or name an existing database in {source}.",
        )
    if _is(error, "psycopg", "ProgrammingError") or re.search(r"invalid .*(connection option|uri)", low):
        detail = message.splitlines()[0].removeprefix("connection is bad: ") if message else "unreadable"
        return UserError(
            f"{source}: not a valid PostgreSQL URL ({detail}).",
            "Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE.",
        )
    if _is(error, "psycopg", "OperationalError"):
        for needle, reason, fix in _CONNECT_REASONS:
            if needle in low:
                return UserError(
                    f"{source}: cannot connect to {target} ({reason}).",
                    fix.format(server="PostgreSQL") + hint,
                )
        first = message.splitlines()[0] if message else type(error).__name__
        return UserError(f"{source}: cannot use {target}: {first}", f"Check {source}.{hint}")
    return UserError(f"{source}: {message.splitlines()[0] if message else type(error).__name__}")


def timescaledb_not_preloaded() -> UserError:
    return UserError(
        "TimescaleDB is installed on the database server but not preloaded (shared_preload_libraries).",
        "Add shared_preload_libraries = 'timescaledb' to postgresql.conf and restart PostgreSQL, "
        "or set DATABASE__TIMESCALEDB=off for plain tables.",
    )


def check_database(
    url: str, source: str = "DATABASE_URL", timeout: float = 10.0, embedded: bool = True
) -> None:
    """Connect once; raises :class:`UserError` naming ``source``, the server and the fix if that fails."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout)), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        raise database_problem(error, url, source, embedded) from error


# --- Redis ------------------------------------------------------------------------------------------


def _redis_target(url: str | None) -> str:
    if not url:
        return "the Redis server"
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"the socket {parts.path}"
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:
        return "the Redis server"


def redis_problem(error: BaseException, url: str | None = None, source: str = "REDIS_URL") -> UserError:
    """A redis-py failure told plainly; ``source`` names where the URL came from."""
    text = _scrub(str(error).strip(), url)
    low = text.lower()
    target = _redis_target(url)
    embedded = " Unset REDIS_URL to use the embedded one." if source == "REDIS_URL" else ""
    if _is(error, "redis", "AuthenticationError") or any(
        word in low
        for word in (
            "wrongpass",
            "noauth",
            "invalid password",
            "authentication required",
            "invalid username-password",
            "without any password configured",
        )
    ):
        given = url is not None and urlsplit(url).password is not None
        problem = "refused the password in it" if given else f"wants a password and {source} has none"
        return UserError(
            f"{source}: Redis at {target} {problem}.",
            f"Check the user and password in {source} (redis://[USER]:PASSWORD@HOST:PORT/0).",
        )
    for needle, reason, fix in _CONNECT_REASONS:
        if needle in low:
            return UserError(
                f"{source}: cannot connect to {target} ({reason}).", fix.format(server="Redis") + embedded
            )
    return UserError(
        f"{source}: Redis at {target}: {text.splitlines()[0] if text else type(error).__name__}",
        f"Check {source}.{embedded}",
    )


def check_redis(url: str, source: str = "REDIS_URL", timeout: float = 5.0) -> None:
    """PING once; raises :class:`UserError` naming ``source``, the server and the fix if that fails."""
    import redis

    try:
        client: Any = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as error:
        raise UserError(
            f"{source}: not a valid Redis URL ({_scrub(str(error), url)}).",
            "Use redis://[:PASSWORD@]HOST:PORT/DB or unix:///path/to/redis.sock.",
        ) from error
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        raise redis_problem(error, url, source) from error
    finally:
        client.close()


# --- ports ------------------------------------------------------------------------------------------


def check_port_free(host: str, port: int, setting: str = "DASHBOARD__PORT") -> None:
    """Raises :class:`UserError` when nothing could listen on ``host:port`` (port 0: any free one)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserError(
                    f"{setting}: port {port} on {host} is already in use (another dashboard?).",
                    f"Stop what listens there, or set {setting} to a free port.",
                ) from error
            host_setting = setting.rsplit("__", 1)[0] + "__HOST" if "__" in setting else "the host"
            raise UserError(
                f"{setting}: cannot listen on {host}:{port} ({error.strerror or error}).",
                f"Check {host_setting} and {setting}.",
            ) from error
