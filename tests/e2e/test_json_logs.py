"""``LOG_FORMAT=json`` in real runs: every line of every log file (and of stderr, for ``up --once``) is a
JSON object with the time, level, logger, message and process; ``up --offline`` writes one file per
process under ``DATA_DIR/logs``. Without it the lines keep the text form. Oracle: ``json.loads`` of each
line, and the names of the processes ``up`` starts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.services import dashboard_argv
from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.e2e.livekit import FLOW, start, stop
from tests.support.browser import free_port, wait_for_port

pytestmark = pytest.mark.slow

KEYS = {"time", "level", "logger", "message", "process"}
BTC = REPO_ROOT / "tests" / "data" / "tapes" / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.-]+: ")


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TCP_CONFIG")}
    return {**kept, "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "INFO", **extra}


def entries(lines: list[str], process: str) -> list[dict[str, object]]:
    """Each line as a JSON object with the keys, from ``process``, stamped with a UTC time."""
    parsed = [json.loads(line) for line in lines]
    for entry in parsed:
        assert KEYS <= entry.keys(), entry
        assert entry["process"] == process, entry
        assert isinstance(entry["message"], str) and isinstance(entry["logger"], str)
        assert datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).tzinfo == UTC
    return parsed


def test_up_once_logs_json_lines_to_stderr_and_its_file(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    env = environment(tmp_path, DATABASE_URL=pg_url, REDIS_URL=redis_url, LOG_FORMAT="json")
    done = subprocess.run(
        [sys.executable, "-m", "app.stack", "up", "--once"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    logs = tmp_path / "data" / "logs"
    assert sorted(p.name for p in logs.glob("*.log")) == ["up.log"]
    in_file = (logs / "up.log").read_text().splitlines()
    parsed = entries(in_file, "up")
    assert any(e["logger"] == "sql.migrate" for e in parsed)
    assert done.stderr.splitlines() == in_file  # the same records, in the same form
    assert "Schema: " in done.stdout and not done.stdout.lstrip().startswith("{")  # status lines stay text


def test_up_once_keeps_the_text_form_by_default(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    env = environment(tmp_path, DATABASE_URL=pg_url, REDIS_URL=redis_url)
    done = subprocess.run(
        [sys.executable, "-m", "app.stack", "up", "--once"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "data" / "logs" / "up.log").read_text().splitlines()
    assert lines and all(TEXT.match(line) for line in lines), lines
    assert done.stderr.splitlines() == lines


def test_up_offline_gives_each_process_its_own_json_log(tmp_path: Path) -> None:
    env = environment(tmp_path, LOG_FORMAT="json", DASHBOARD__PORT=str(free_port()))
    logs = tmp_path / "data" / "logs"
    up = subprocess.Popen(
        [sys.executable, "-m", "app.stack", "up", "--offline"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        wanted = ["flow.log", "okx-simulator.log", "up.log"]
        while not all((logs / name).exists() and (logs / name).stat().st_size for name in wanted):
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, sorted(p.name for p in logs.glob("*"))
            time.sleep(0.5)
    finally:
        os.killpg(up.pid, signal.SIGINT)
        out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    for name in wanted:
        entries((logs / name).read_text().splitlines(), name.removesuffix(".log"))
    assert "status: okx:BTC-USDT" in out or "Up: " in out
    relayed = [line for line in err.splitlines() if line.startswith("{")]
    assert {json.loads(line)["process"] for line in relayed} >= {"up", "flow", "okx-simulator"}


def test_the_live_flow_s_records_about_an_instrument_carry_exchange_and_symbol(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The simulator drops the connection after 200 messages: the flow reconnects and backfills the
    trades it missed over REST, and says so about BTC-USDT."""
    migrate(pg_url, "off")
    env = environment(tmp_path, LOG_FORMAT="json", DATABASE_URL=pg_url, REDIS_URL=redis_url)
    sim_argv = [sys.executable, "-m", "connectors.okx.simulator", "--tape", str(BTC), "--rebase-now"]
    simulator = start([*sim_argv, "--start-offset", "60", "--drop-after-messages", "200"], env)
    try:
        assert simulator.stdout is not None
        ready = json.loads(simulator.stdout.readline())
        okx = {"OKX_WS_URL": ready["ws_public"], "OKX_REST_URL": ready["rest"], "INSTRUMENTS": "BTC-USDT"}
        flow = start(FLOW, {**env, **okx})
        logs = tmp_path / "data" / "logs"
        try:
            deadline = time.monotonic() + 120
            while '"symbol"' not in ((logs / "flow.log").read_text() if (logs / "flow.log").exists() else ""):
                assert flow.poll() is None, flow.communicate()
                assert time.monotonic() < deadline, "no record about an instrument"
                time.sleep(0.5)
        finally:
            stop(flow)
    finally:
        stop(simulator)
    assert flow.returncode == 0
    parsed = entries((logs / "flow.log").read_text().splitlines(), "flow")
    about = [e for e in parsed if "symbol" in e]
    assert about and all((e["exchange"], e["symbol"]) == ("okx", "BTC-USDT") for e in about), about
    assert all("BTC-USDT" in str(e["message"]) for e in about)
    entries((logs / "okx-simulator.log").read_text().splitlines(), "okx-simulator")


def test_the_dashboard_server_logs_json_to_its_own_file_with_the_setup_script(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*dashboard_argv("127.0.0.1", port), "--setup", "dashboards/serve_logs.py"],
        cwd=REPO_ROOT,
        env=environment(tmp_path, LOG_FORMAT="json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for_port(port, server)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/app", timeout=30) as page:
            assert page.status == 200
    finally:
        os.killpg(server.pid, signal.SIGINT)
        _, err = server.communicate(timeout=30)
    lines = (tmp_path / "data" / "logs" / "dashboard.log").read_text().splitlines()
    parsed = entries(lines, "dashboard")
    assert any(str(e["logger"]).startswith("bokeh.") for e in parsed)
    assert err.decode().splitlines() == lines
