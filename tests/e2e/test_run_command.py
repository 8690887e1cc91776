"""The README's run command on a fresh copy of the repository: creates its environment, starts a real
PostgreSQL and Redis from nothing, runs the live flow offline against the simulator, keeps data across
restarts and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def fresh_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone would have them (tracked + new, never ignored ones)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


class Run:
    """``python3 tcp.py ...`` in a clone, its output read line by line."""

    def __init__(self, clone: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TCP_CONFIG")}
        env.pop("VIRTUAL_ENV", None)
        self.process = subprocess.Popen(
            [sys.executable, "tcp.py", *args],
            cwd=clone,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not seen; output:\n{''.join(self.output)}")

    def interrupt(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.reader.join(10)
            while not self.lines.empty():
                self.output.append(self.lines.get())
            shown = "".join(self.output)
            raise AssertionError(f"no exit {timeout:.0f} s after Ctrl-C; output:\n{shown}") from None
        self.reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code


def test_run_command_from_a_fresh_clone(tmp_path: Path) -> None:
    """`python3 tcp.py up --offline` on a fresh copy: environment, database, Redis, simulator and live
    flow come up, candles land in the database, Ctrl-C stops everything, and the data persists."""
    clone = fresh_copy(tmp_path / "clone")
    assert not (clone / ".venv").exists() and not (clone / ".data").exists()

    first = Run(clone, "up", "--offline")
    url = first.wait_for("psql ", timeout=900).split('"')[1]  # first use creates the environment
    assert (clone / ".venv").is_dir() and (clone / ".data" / "pg").is_dir()
    first.wait_for("Up: ", timeout=120)
    deadline = time.monotonic() + 240  # the first full minute closes within two minutes
    candles = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline and candles == 0:
            time.sleep(2)
            assert first.process.poll() is None, "".join(first.output)
            candles = conn.execute("SELECT count(*) FROM candles_1m WHERE trade_count > 0").fetchone()[0]  # type: ignore[index]
    assert candles > 0, "no candle reached the database"
    assert first.interrupt() == 0
    assert any("Embedded PostgreSQL stopped" in line for line in first.output)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()

    second = Run(clone, "up")
    second.wait_for("Schema: up to date", timeout=120)
    second.wait_for("Up: ", timeout=60)
    with psycopg.connect(url) as conn:
        kept = conn.execute("SELECT count(*) FROM candles_1m WHERE trade_count > 0").fetchone()
    assert kept is not None and kept[0] >= candles
    assert second.interrupt() == 0


def test_a_bad_setting_stops_the_run_command_naming_the_field(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CANDLE_GRACE"] = "forever"
    result = subprocess.run(
        [sys.executable, "-m", "app.stack", "up", "--once"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "candle_grace:" in result.stderr
