"""The backtest command as a user runs it: ``python3 tcp.py backtest`` and ``python -m flows.backtest``
are one command, over a tape, writing the JSON of docs/backtest.md."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.flows.flowkit import XRP_TAPE

TRADE_KEYS = {
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "quantity",
    "pnl",
    "fees",
    "side",
    "open",
}


def command(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_both_entry_points_run_the_same_backtest_over_a_tape(tmp_path: Path) -> None:
    args = ["--tapes", str(XRP_TAPE), "--strategy", "ema_crossover", "--param", "fast=7", "--no-store"]
    documents = []
    for i, entry in enumerate(
        ([sys.executable, "tcp.py", "backtest"], [sys.executable, "-m", "flows.backtest"])
    ):
        out = tmp_path / f"run{i}.json"
        result = command([*entry, *args, "--json", str(out)], tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Final equity" in result.stdout and "candles/s" in result.stdout
        assert "backtest: " in result.stderr and "ETA" in result.stderr
        documents.append(json.loads(out.read_text()))
    for document in documents:
        for run in document["runs"]:
            run.pop("timings")
    assert documents[0] == documents[1]
    document = documents[0]
    (run,) = document["runs"]
    assert (run["symbol"], run["timeframe"], run["strategy"], run["run_id"]) == (
        "XRP-ETH",
        "1m",
        "ema_crossover",
        None,
    )
    assert run["config"]["params"] == {"fast": 7}
    assert document["metrics"] == run["metrics"] and document["trades"] == run["trades"]
    assert all(set(trade) == TRADE_KEYS for trade in run["trades"]) and len(run["trades"]) > 10
    # equity = starting cash + every trade's pnl (the open one marked at the last close)
    pnl = math.fsum(trade["pnl"] for trade in run["trades"])
    assert math.isclose(run["metrics"]["final_equity"], 10_000 + pnl, rel_tol=1e-9)


def test_the_command_answers_help(tmp_path: Path) -> None:
    result = command([sys.executable, "tcp.py", "backtest", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: python3 tcp.py backtest" in result.stdout
    for flag in (
        "--tapes",
        "--config",
        "--fee-bps",
        "--slippage-bps",
        "--short",
        "--json",
        "--report",
        "--check",
    ):
        assert flag in result.stdout
