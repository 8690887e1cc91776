"""Every entry point fails cleanly: each bad input a new user can give (unreachable or wrong database and
Redis URLs, TimescaleDB asked for but missing, YAML syntax errors, missing tapes, bad simulator arguments,
a dashboard port in use) ends the real command with exit code 2 and one or two lines naming the problem
and the fix, no traceback, no password; ``--debug``/``TCP_DEBUG=1`` shows the traceback.

Runs the real commands against real servers (an embedded PostgreSQL with a password-checked role, a Redis
that wants a password), all cases at once in threads to keep the module around 10 s.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis

from app.embedded_postgres import EmbeddedPostgres
from app.embedded_redis import EmbeddedRedis
from tests.conftest import REPO_ROOT, TEST_DATA

pytestmark = pytest.mark.slow

TAPE = str(TEST_DATA / "tapes" / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv")
SECRET = "s3cret-pw"  # never printed
UP = [sys.executable, "tcp.py", "up"]
MIGRATE = [sys.executable, "tcp.py", "migrate"]
SIM = [sys.executable, "tcp.py", "sim"]
POLICIES = [sys.executable, "-m", "sql.policies"]


def flow(name: str) -> list[str]:
    return [sys.executable, "-m", "bytewax.run", f"flows.{name}"]


@dataclass(frozen=True)
class Case:
    argv: list[str]
    env: dict[str, str]
    expected: tuple[str, ...]  # in the output: the problem, then the fix
    debug: bool = False


@dataclass
class Servers:
    """The real servers the cases point at, and files and ports they need."""

    pg_url: str  # trust auth for the superuser
    alice_wrong: str  # a password-checked role, with a wrong password
    missing_db: str
    redis_wrong: str
    busy_port: int
    bad_yaml: Path
    data_dir: Path
    extra: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("errors")
    pg = EmbeddedPostgres(root / "pg")
    url = pg.start()
    red = EmbeddedRedis(root / "redis", transport="tcp")
    redis_url = red.start()
    busy = socket.socket()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE ROLE alice LOGIN PASSWORD 'right-pw'")
            hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
            hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        redis.Redis.from_url(redis_url).config_set("requirepass", "right-pw")
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        bad_yaml = root / "bad.yaml"
        bad_yaml.write_text("dashboard:\n  port: 5006\n host: 127.0.0.1\n")
        yield Servers(
            pg_url=url,
            alice_wrong=url.replace("postgres:@", f"alice:{SECRET}@"),
            missing_db=EmbeddedPostgres.database_url(url, "nope"),
            redis_wrong=redis_url.replace("redis://", f"redis://:{SECRET}@"),
            busy_port=busy.getsockname()[1],
            bad_yaml=bad_yaml,
            data_dir=root / "data",
        )
    finally:
        busy.close()
        red.stop()
        pg.stop()


def cases(s: Servers) -> dict[str, Case]:
    refused = f"postgresql://u:{SECRET}@127.0.0.1:1/db"
    refused_msg = (
        "DATABASE_URL: cannot connect to 127.0.0.1:1 (connection refused)",
        "Is PostgreSQL running",
        "Unset DATABASE_URL to use the embedded one",
    )
    replay = {"REPLAY_TAPES": TAPE}
    yaml_msg = ("bad.yaml, line 3, column 2", "YAML syntax error", "Fix the YAML there")
    return {
        # DATABASE_URL
        "up-db-refused": Case(UP, {"DATABASE_URL": refused}, refused_msg),
        "migrate-db-refused": Case(
            MIGRATE,
            {"DATABASE_URL": refused},
            ("cannot connect to 127.0.0.1:1 (connection refused)", "Is PostgreSQL running"),
        ),
        "policies-db-refused": Case(
            POLICIES, {"DATABASE_URL": refused}, ("connection refused", "running there")
        ),
        "okx-db-refused": Case(flow("okx"), {"DATABASE_URL": refused}, refused_msg),
        "replay-db-refused": Case(flow("replay"), {**replay, "DATABASE_URL": refused}, refused_msg),
        "up-db-unknown-host": Case(
            UP,
            {"DATABASE_URL": f"postgresql://u:{SECRET}@nohost.invalid/db"},
            ("cannot connect to nohost.invalid:5432 (unknown host)", "Check the host name"),
        ),
        "migrate-db-malformed": Case(
            MIGRATE,
            {"DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:abc/db"},
            ("not a valid PostgreSQL URL", "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
        ),
        "up-db-not-postgres": Case(
            UP, {"DATABASE_URL": f"mysql://u:{SECRET}@h/db"}, ("database_url: must be a postgresql:// URL",)
        ),
        "migrate-db-wrong-password": Case(
            MIGRATE,
            {"DATABASE_URL": s.alice_wrong},
            ('refused the password of user "alice"', "Check the user and password"),
        ),
        "okx-db-wrong-password": Case(
            flow("okx"),
            {"DATABASE_URL": s.alice_wrong},
            ('refused the password of user "alice"', "in DATABASE_URL"),
        ),
        "up-db-missing-database": Case(
            UP, {"DATABASE_URL": s.missing_db}, ('has no database "nope"', "createdb nope")
        ),
        "replay-db-missing-database": Case(
            flow("replay"),
            {**replay, "DATABASE_URL": s.missing_db},
            ('has no database "nope"', "createdb nope"),
        ),
        "migrate-timescaledb-on": Case(
            MIGRATE,
            {"DATABASE_URL": s.pg_url, "DATABASE__TIMESCALEDB": "on"},
            ("does not offer the timescaledb extension", "DATABASE__TIMESCALEDB=auto"),
        ),
        "up-timescaledb-on": Case(
            [*UP, "--once"],
            {"DATABASE_URL": s.pg_url, "DATABASE__TIMESCALEDB": "on"},
            ("does not offer the timescaledb extension", "DATABASE__TIMESCALEDB=auto"),
        ),
        # REDIS_URL
        "up-redis-refused": Case(
            UP,
            {"REDIS_URL": "redis://127.0.0.1:1/0"},
            (
                "REDIS_URL: cannot connect to 127.0.0.1:1 (connection refused)",
                "Is Redis running there? Unset REDIS_URL",
            ),
        ),
        "up-redis-wrong-password": Case(
            UP,
            {"REDIS_URL": s.redis_wrong},
            ("refused the password", "Check the user and password in REDIS_URL"),
        ),
        "up-redis-malformed": Case(
            UP,
            {"REDIS_URL": "redis://127.0.0.1:abc/0"},
            ("REDIS_URL: not a valid Redis URL", "redis://[:PASSWORD@]HOST:PORT/DB"),
        ),
        "replay-redis-unknown-host": Case(
            flow("replay"),
            {**replay, "DATABASE_URL": s.pg_url, "REDIS_URL": "redis://nohost.invalid:6379/0"},
            ("REDIS_URL: cannot connect to nohost.invalid:6379 (unknown host)", "Check the host name"),
        ),
        # configuration
        "up-yaml": Case(UP, {"TCP_CONFIG": str(s.bad_yaml)}, yaml_msg),
        "migrate-yaml": Case(MIGRATE, {"TCP_CONFIG": str(s.bad_yaml)}, yaml_msg),
        "policies-yaml": Case(POLICIES, {"TCP_CONFIG": str(s.bad_yaml)}, yaml_msg),
        "replay-yaml": Case(flow("replay"), {**replay, "TCP_CONFIG": str(s.bad_yaml)}, yaml_msg),
        "session-yaml": Case(flow("session"), {"TCP_CONFIG": str(s.bad_yaml)}, yaml_msg),
        "up-indicators-yaml": Case(
            UP, {"INDICATORS_CONFIG": str(s.bad_yaml)}, ("invalid indicator configuration", *yaml_msg)
        ),
        "up-env-negative-grace": Case(UP, {"CANDLE_GRACE": "-5"}, ("candle_grace", "must not be negative")),
        # tapes and the simulator
        "up-offline-missing-tape": Case(
            [*UP, "--offline", "nope.csv"],
            {},
            ("up --offline: tape nope.csv does not exist", "OKX trades CSV"),
        ),
        "replay-missing-tape": Case(
            flow("replay"),
            {"REPLAY_TAPES": "nope.csv"},
            ("REPLAY_TAPES: tape nope.csv does not exist", "tapes"),
        ),
        "replay-no-tapes": Case(
            flow("replay"), {"REPLAY_TAPES": ""}, ("REPLAY_TAPES is empty", "comma-separated")
        ),
        "session-missing": Case(
            flow("session"), {"SESSION_FILES": "nope"}, ("SESSION_FILES: nope", "RECORDING__ENABLED=true")
        ),
        "sim-missing-tape": Case(
            [*SIM, "--tape", "nope.csv"], {}, ("tape nope.csv does not exist", "with --tape")
        ),
        "sim-bad-speed": Case(
            [*SIM, "--tape", TAPE, "--speed", "fast"],
            {},
            ("argument --speed: invalid float value: 'fast'", "sim --help"),
        ),
        "sim-unknown-option": Case(
            [*SIM, "--tape", TAPE, "--bogus"], {}, ("unrecognized arguments: --bogus", "sim --help")
        ),
        "sim-port-in-use": Case(
            [*SIM, "--tape", TAPE, "--port", str(s.busy_port)],
            {},
            (f"port {s.busy_port} on 127.0.0.1 is already in use", "another --port"),
        ),
        # the dashboard's port
        "up-dashboard-port-in-use": Case(
            UP,
            {"DASHBOARD__PORT": str(s.busy_port)},
            (
                f"DASHBOARD__PORT: port {s.busy_port} on 127.0.0.1 is already in use",
                "set DASHBOARD__PORT to a free port",
            ),
        ),
        # --debug / TCP_DEBUG=1 show the traceback
        "up-debug": Case([*UP, "--debug"], {"DATABASE_URL": refused}, refused_msg, debug=True),
        "migrate-debug": Case(
            [*MIGRATE, "--debug"], {"DATABASE_URL": refused}, ("connection refused",), debug=True
        ),
        "sim-debug": Case(
            [*SIM, "--debug", "--tape", TAPE, "--port", str(s.busy_port)], {}, ("already in use",), debug=True
        ),
        "replay-debug": Case(
            flow("replay"), {**replay, "DATABASE_URL": refused, "TCP_DEBUG": "1"}, refused_msg, debug=True
        ),
    }


def run(case: Case, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "TCP_CONFIG", "TCP_DEBUG", "REPLAY_TAPES", "SESSION_FILES")
    }
    env |= {"DATA_DIR": str(data_dir), **case.env}
    return subprocess.run(case.argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def results(servers: Servers) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case run once, concurrently (each in its own data directory)."""
    table = cases(servers)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(run, case, servers.data_dir / name) for name, case in table.items()}
        return {name: future.result() for name, future in futures.items()}


NAMES = list(cases(Servers("postgresql://postgres:@/postgres?host=/x", "", "", "", 1, Path("x"), Path("x"))))


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_input_is_named_with_its_fix_exit_2_no_traceback(
    name: str, servers: Servers, results: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    case = cases(servers)[name]
    result = results[name]
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    for text in case.expected:
        assert text in output, output
    assert SECRET not in output
    if case.debug:
        assert "Traceback (most recent call last)" in output, output
    else:
        assert "Traceback" not in output, output
        assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 4, output


def test_only_connection_failures_are_user_errors_a_bug_keeps_its_traceback() -> None:
    from configs.errors import explain, run_cli

    assert explain(psycopg.errors.SyntaxError("syntax error at or near SELEC")) is None
    assert explain(redis.ResponseError("WRONGTYPE Operation against a key")) is None
    refused = explain(
        psycopg.OperationalError('connection to server at "h", port 1 failed: Connection refused')
    )
    assert refused is not None and "connection refused" in str(refused)

    def bug() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_cli(bug)


def test_a_password_libpq_echoes_is_scrubbed() -> None:
    from configs.errors import database_problem

    url = f"postgresql://u:{SECRET}@h:5432/db"
    problem = database_problem(
        psycopg.OperationalError(f"invalid URI query parameter: {SECRET}"), url, "DATABASE_URL"
    )
    assert SECRET not in str(problem) and "***" in str(problem)
