"""Running the Binance simulator's command in tests: its ready line gives the URLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT, TEST_DATA

XRP = TEST_DATA / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
KLINES = {
    "1m": TEST_DATA / "tapes" / "XRP-ETH-exchange-candles-1m.csv",
    "5m": TEST_DATA / "tapes" / "XRP-ETH-exchange-candles-5m.csv",
}


@contextmanager
def binance_simulator(log: Path, *args: str) -> Iterator[dict[str, Any]]:
    """``python -m connectors.binance.simulator ARGS`` until the block ends; yields its ready line."""
    command = [sys.executable, "-m", "connectors.binance.simulator", "--port", "0", *args]
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, env=os.environ.copy()
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["ready"] is True, ready
            yield ready
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def wait_played(ready: dict[str, Any], symbol: str, last_id: int, within: float = 30) -> None:
    """Wait until the simulator's newest aggregate trade of ``symbol`` (``XRPETH``) is ``last_id``."""
    deadline = time.monotonic() + within
    url = f"{ready['rest']}/api/v3/aggTrades?symbol={symbol}&limit=1"
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as answer:
            newest = json.loads(answer.read())
        if newest and newest[-1]["a"] == last_id:
            return
        time.sleep(0.05)
    raise AssertionError(f"the simulator did not play up to {last_id} within {within} s")
