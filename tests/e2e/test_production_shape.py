"""The production shape without a container engine: the migrate, flow and dashboard services of
docker-compose.yml (their commands, environments and health checks, read from the file) run as the
unprivileged user ``nobody`` from a read-only, root-owned copy of the code the image holds (the
Dockerfile's ``COPY`` sources), with DATA_DIR in a separate
directory only ``nobody`` writes, against a real PostgreSQL and Redis reached over their URLs and the
OKX simulator. Checked: trades are stored, both health checks pass, the dashboard serves its page and
reads with the SELECT-only role, a database outage is spooled under DATA_DIR and written when the
database is back, recorded sessions and the recovery store are written there, and nothing is written
into the code. (The test server trusts local connections, so the reader role's password itself is
checked in tests/sql/test_roles.py.)
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from app.embedded_postgres import EmbeddedPostgres
from app.embedded_redis import EmbeddedRedis
from tests.conftest import REPO_ROOT
from tests.e2e.compose_file import environment_of, image_sources, load
from tests.e2e.livekit import start_simulator
from tests.e2e.livekit import stop as stop_simulator
from tests.flows.flowkit import BTC_TAPE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

USER = "nobody"
SECRETS = {"POSTGRES_PASSWORD": "unused", "DASHBOARD_DB_PASSWORD": "reader-pw_1", "REDIS_PASSWORD": "unused"}
STACK_IMPORTS = "import bytewax, panel, psycopg, redis"


def as_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *argv]


def run_as_user(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_user(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def user_can_read(path: Path) -> bool:
    return subprocess.run(as_user(["test", "-r", str(path)])).returncode == 0


def readable_python(root: Path) -> tuple[str, dict[str, str]]:
    """An interpreter ``nobody`` can run with this environment's packages, and the environment it needs.
    This one if ``nobody`` can use it as it is; else (a Python installed under /root, say) a copy of its
    executable and standard library in ``root``, with the site-packages linked in."""
    probe = f"import sys; {STACK_IMPORTS}; print(sys.version)"
    ran = subprocess.run(as_user([sys.executable, "-c", probe]), capture_output=True, text=True)
    if ran.returncode == 0 and ran.stdout.strip() == sys.version:
        return sys.executable, {}
    base, version = Path(sys.base_prefix), f"python{sys.version_info.major}.{sys.version_info.minor}"
    prefix = root / "python"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    shutil.copy2(Path(sys._base_executable).resolve(), prefix / "bin" / version)  # type: ignore[attr-defined]
    for library in (base / "lib").glob("libpython*.so*"):
        shutil.copy2(library, prefix / "lib" / library.name)
    skip = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip")
    shutil.copytree(sysconfig.get_paths()["stdlib"], prefix / "lib" / version, ignore=skip, symlinks=True)
    site = prefix / "lib" / version / "site-packages"
    site.mkdir()
    packages = Path(sysconfig.get_paths()["purelib"])
    if not user_can_read(packages / "psycopg" / "__init__.py"):
        linked = root / "site-packages"
        try:
            shutil.copytree(packages, linked, copy_function=os.link, symlinks=True)
        except OSError as error:
            pytest.skip(f"{USER} cannot read {packages} and it cannot be linked elsewhere ({error})")
        packages = linked
    (site / "environment.pth").write_text(f"{packages}\n")
    subprocess.run(["chmod", "-R", "a+rX", str(prefix)], check=True)
    python = str(prefix / "bin" / version)
    env = {"LD_LIBRARY_PATH": str(prefix / "lib")}
    ran = subprocess.run(
        as_user([python, "-c", probe]), env={**os.environ, **env}, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    return python, env


def read_only_copy(destination: Path) -> list[str]:
    """The tracked files the image holds (what the Dockerfile copies) copied to ``destination``, owned by
    root and not writable by anyone; returns the listing to compare with later."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
    sources = image_sources()
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file() and any(name == s or name.startswith(f"{s}/") for s in sources):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    subprocess.run(["chown", "-R", "root:root", str(destination)], check=True)
    subprocess.run(["chmod", "-R", "a-w,a+rX", str(destination)], check=True)
    return listing(destination)


def listing(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def at_address(url: str, server: str) -> str:
    """``url``'s role and password on ``server``'s address and database (the test server's socket)."""
    role, server_parts = urlsplit(url).netloc.rsplit("@", 1)[0], urlsplit(server)
    return urlunsplit(server_parts._replace(netloc=f"{role}@{server_parts.netloc.rsplit('@', 1)[-1]}"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Database:
    """The embedded PostgreSQL, its Unix socket open to other users, stoppable for an outage."""

    data_dir: Path
    server: EmbeddedPostgres | None = None

    def start(self) -> str:
        if self.data_dir.exists():
            self.data_dir.chmod(0o700)  # PostgreSQL refuses to start on a directory others may enter
        self.server = EmbeddedPostgres(self.data_dir)
        url = self.server.start()
        self.data_dir.chmod(0o711)  # others may reach the socket in it, not list or read it
        return url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class Stage:
    root: Path
    app: Path
    data: Path
    python: str
    base_env: dict[str, str]
    database: Database
    url: str
    redis_url: str
    logs: Path

    def env(self, service: dict[str, Any], **overrides: str) -> dict[str, str]:
        """The service's compose environment, pointed at the test's servers and directories."""
        given = environment_of(service)
        given |= {"DATABASE_URL": self.url, "DATABASE__TIMESCALEDB": "off", "DATA_DIR": str(self.data)}
        if "REDIS_URL" in given:
            given["REDIS_URL"] = self.redis_url
        return {**self.base_env, **given, **overrides}

    def argv(self, command: list[str]) -> list[str]:
        assert command[0] == "python", command
        return [self.python, *command[1:]]

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        with (self.logs / f"{name}.log").open("a") as out:
            return subprocess.Popen(
                as_user(self.argv(command)),
                cwd=self.app,
                env=env,
                text=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def stage() -> Iterator[Stage]:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip(f"needs root and runuser: the services run as the unprivileged user {USER}")
    root = Path(tempfile.mkdtemp(prefix="tcp-production-"))
    root.chmod(0o755)
    database = Database(root / "pg" / "data")
    redis = EmbeddedRedis(root / "redis")
    try:
        app, data, logs = root / "app", root / "data", root / "logs"
        for directory in (app, logs):
            directory.mkdir()
        data.mkdir(mode=0o750)
        user = pwd.getpwnam(USER)
        os.chown(data, user.pw_uid, user.pw_gid)
        read_only_copy(app)
        python, python_env = readable_python(root)
        server = database.start()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("CREATE DATABASE tcp")
        redis_url = redis.start()
        Path(redis_url.removeprefix("unix://")).chmod(0o777)
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LOG_LEVEL": "INFO",
            **python_env,
        }
        yield Stage(
            root,
            app,
            data,
            python,
            base_env,
            database,
            EmbeddedPostgres.database_url(server, "tcp"),
            redis_url,
            logs,
        )
    finally:
        redis.stop()
        database.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(what: str, check: Callable[[], object], timeout: float, context: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what}: not in {timeout} s\n{context()}"
        time.sleep(0.3)
    return result


def scalar(url: str, query: str) -> Any:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(query).fetchone()
    except psycopg.OperationalError:
        return None
    return None if row is None else row[0]


def spooled(data: Path) -> list[Path]:
    return sorted((data / "spool").rglob("*.batch"))


def clear_of_candle_closes() -> bool:
    """Whether the next 15 s hold no 1m candle close (at about CANDLE_GRACE, 2 s, past each minute): the
    indicator step reads stored history at a series' first candle and waits there for the database, so an
    outage falling on it would hold the batches back instead of spooling them, which is what is checked."""
    return 6 <= time.time() % 60 <= 44


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def page(port: int) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/app", timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return None


def test_the_services_run_unprivileged_from_read_only_code(stage: Stage) -> None:
    compose = load({**SECRETS, "RECORDING__ENABLED": "true"})
    services = compose["services"]
    code_before = listing(stage.app)
    nobody = pwd.getpwnam(USER).pw_uid

    migrate = services["migrate"]
    ran = run_as_user(stage.argv(migrate["command"]), stage.env(migrate), stage.app)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert scalar(stage.url, "SELECT count(*) FROM schema_migrations")

    # The recovery store as docs/deployment.md sets it up, written by the flow's user.
    recovery = stage.data / "recovery"
    assert run_as_user(["mkdir", str(recovery)], stage.base_env, stage.app).returncode == 0
    ran = run_as_user([stage.python, "-m", "bytewax.recovery", str(recovery), "1"], stage.base_env, stage.app)
    assert ran.returncode == 0, ran.stderr
    simulator, okx = start_simulator(BTC_TAPE, "--start-offset", "240")
    flow_env = stage.env(
        services["flow"],
        INSTRUMENTS="BTC-USDT",
        BYTEWAX_RECOVERY_DIRECTORY=str(recovery),
        BYTEWAX_SNAPSHOT_INTERVAL="2",
        BYTEWAX_RECOVERY_BACKUP_INTERVAL="0",
        **okx,
    )
    port = free_port()
    dashboard = services["dashboard"]
    dashboard_command = [
        str(part).replace("5006", str(port)).replace("0.0.0.0", "127.0.0.1") for part in dashboard["command"]
    ]
    reader_env = stage.env(
        dashboard, DATABASE_URL=at_address(environment_of(dashboard)["DATABASE_URL"], stage.url)
    )
    flow = stage.start("flow", services["flow"]["command"], flow_env)
    board = stage.start("dashboard", dashboard_command, reader_env)
    try:
        flow_log = partial(stage.log, "flow")
        wait_for("trades stored", lambda: scalar(stage.url, "SELECT count(*) FROM trades"), 40, flow_log)
        wait_for(
            "a current collector health row",
            lambda: scalar(
                stage.url, "SELECT 1 FROM collector_health WHERE time > now() - interval '30 seconds'"
            ),
            30,
            flow_log,
        )
        flow_check = services["flow"]["healthcheck"]["test"]
        assert flow_check[:2] == ["CMD", "python"]
        ran = run_as_user(stage.argv(flow_check[1:]), flow_env, stage.app)
        assert ran.returncode == 0, ran.stderr

        served = wait_for("the dashboard page", lambda: page(port), 40, lambda: stage.log("dashboard"))
        assert served[0] == 200 and b"TCP Dashboard" in served[1]
        board_check = [str(part).replace("5006", str(port)) for part in dashboard["healthcheck"]["test"]]
        ran = run_as_user(stage.argv(board_check[1:]), reader_env, stage.app)
        assert ran.returncode == 0, ran.stderr
        readers = scalar(stage.url, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tcp_dashboard'")
        assert readers, "the dashboard does not read with the SELECT-only role"

        # A database outage: the flow spools under DATA_DIR and writes it all once the database is back.
        wait_for("a moment clear of candle closes", clear_of_candle_closes, 60, flow_log)
        stored = scalar(stage.url, "SELECT count(*) FROM trades")
        stage.database.stop()
        batches = wait_for("batches spooled", lambda: spooled(stage.data), 20, flow_log)
        assert all(path.stat().st_uid == nobody for path in batches)
        ran = run_as_user(stage.argv(flow_check[1:]), flow_env, stage.app)
        assert ran.returncode != 0, "healthy while the database is down"
        stage.database.start()
        wait_for("the spool written", lambda: not spooled(stage.data) and flow.poll() is None, 40, flow_log)
        wait_for(
            "trades after the outage",
            lambda: (scalar(stage.url, "SELECT count(*) FROM trades") or 0) > stored,
            20,
            flow_log,
        )
        assert flow.poll() is None and board.poll() is None
    finally:
        flow_code = stop(flow)
        stop(board)
        stop_simulator(simulator)
    assert flow_code == 0, stage.log("flow")
    assert "Traceback" not in stage.log("flow")

    sessions = list((stage.data / "sessions").rglob("*.jsonl.gz"))
    assert sessions and all(path.stat().st_uid == nobody for path in sessions)
    with sqlite3.connect(recovery / "part-0.sqlite3") as store:
        assert store.execute("SELECT count(*) FROM snaps").fetchone()[0] > 0
    assert listing(stage.app) == code_before, "something was written into the code"
