"""Running the real live system in tests: the OKX simulator and `python -m bytewax.run flows.okx` as
processes, and the oracle they are checked against: `flows.replay` in-process over the same tape shifted
by the simulator's rebase offset (a clean, uninterrupted run of the same market)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from market.types import Candle
from tests.conftest import REPO_ROOT
from tests.flows.flowkit import ms, run_replay
from tests.support.tapes import tape_rows

TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
FIELDS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "first_trade_id",
    "last_trade_id",
    "complete",
)
FLOW = [sys.executable, "-m", "bytewax.run", "flows.okx"]


def start(
    argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[str]:
    """A process in a session of its own; its output to ``log`` (appended) or to pipes."""
    environment = {**os.environ, **(env or {})}
    if log is None:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=environment,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    with log.open("a") as out:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=environment,
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def start_simulator(tape: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The simulator replaying ``tape`` rebased to now; returns it and the settings pointing at it."""
    simulator = start(
        [sys.executable, "-m", "connectors.okx.simulator", "--tape", str(tape), "--rebase-now", *args]
    )
    assert simulator.stdout is not None
    ready = json.loads(simulator.stdout.readline())
    return simulator, {"OKX_WS_URL": ready["ws_public"], "OKX_REST_URL": ready["rest"]}


@dataclass
class Market:
    """The tape the simulator serves, and where its trades landed in time (the rebase offset)."""

    tape: Path
    rows: list[dict[str, str]]
    offset: timedelta

    @classmethod
    def of(cls, tape: Path, conn: psycopg.Connection[Any]) -> Market:
        rows = tape_rows(tape)
        first = conn.execute("SELECT trade_id, time FROM trades ORDER BY trade_id LIMIT 1").fetchone()
        assert first is not None, "no trade stored"
        by_id = {int(r["trade_id"]): r for r in rows}
        return cls(tape, rows, first[1] - ms(by_id[first[0]]["created_time"]))

    @classmethod
    def of_when_stored(cls, tape: Path, conn: psycopg.Connection[Any], timeout: float) -> Market:
        """``of`` once the first trade is stored (waiting up to ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not conn.execute("SELECT 1 FROM trades LIMIT 1").fetchone():
            assert time.monotonic() < deadline, "no trade stored in time"
            time.sleep(0.5)
        return cls.of(tape, conn)

    def first_close(self, conn: psycopg.Connection[Any], timeout: float) -> datetime:
        """Close of the first stored 1m candle (waiting up to ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while (row := conn.execute("SELECT min(time) FROM candles_1m").fetchone()) is None or row[0] is None:
            assert time.monotonic() < deadline, "no candle stored in time"
            time.sleep(0.5)
        return row[0]

    @property
    def last_full_close(self) -> datetime:
        """Close of the tape's last complete minute, in live time (the final minute is incomplete)."""
        return ms(self.rows[-1]["created_time"]).replace(second=0, microsecond=0) + self.offset

    def trades_between(self, first_id: int, before: datetime) -> list[tuple[object, ...]]:
        """The market's trades from ``first_id`` on and stamped before ``before``, as (id, time, price,
        size, side) in live time."""
        rows = []
        for r in self.rows:
            at = ms(r["created_time"]) + self.offset
            if int(r["trade_id"]) >= first_id and at < before:
                rows.append((int(r["trade_id"]), at, Decimal(r["price"]), Decimal(r["size"]), r["side"]))
        return rows

    def replay(self, directory: Path) -> dict[str, dict[datetime, tuple[object, ...]]]:
        """The oracle: per timeframe, close -> candle values of a clean replay of the shifted tape."""
        shift = self.offset // timedelta(milliseconds=1)
        path = directory / f"shifted-{self.tape.name}"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            for row in self.rows:
                writer.writerow({**row, "created_time": str(int(row["created_time"]) + shift)})
        captured = run_replay([path])
        return {tf: {c.close_time: values(c) for c in captured.of(tf)} for tf in TIMEFRAMES}


def values(candle: Candle) -> tuple[object, ...]:
    return tuple(getattr(candle, name) for name in FIELDS)


def stored_trades(conn: psycopg.Connection[Any], symbol: str, before: datetime) -> list[tuple[object, ...]]:
    """The stored trades of ``symbol`` stamped before ``before``, as (id, time, price, size, side)."""
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT trade_id, time, price, size, side FROM trades WHERE symbol = %s AND time < %s"
            " ORDER BY trade_id",
            (symbol, before),
        ).fetchall()
    ]


def stored_candles(conn: psycopg.Connection[Any], symbol: str) -> dict[str, list[tuple[object, ...]]]:
    """Per timeframe, the public candles (`candles` view) as (time, *FIELDS), oldest first."""
    return {
        tf: [
            tuple(r)
            for r in conn.execute(
                f"SELECT time, {', '.join(FIELDS)} FROM candles"
                " WHERE symbol = %s AND timeframe = %s ORDER BY time",
                (symbol, tf),
            ).fetchall()
        ]
        for tf in TIMEFRAMES
    }


def wait_for_close(
    conn: psycopg.Connection[Any], close: datetime, flow: subprocess.Popen[str], log: Path, timeout: float
) -> None:
    """Until the 1m candle closing at ``close`` is stored; fails if the flow exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not conn.execute("SELECT 1 FROM candles_1m WHERE time >= %s", (close,)).fetchone():
        assert flow.poll() is None, f"the flow exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no candle closing {close} in time:\n{log.read_text()[-3000:]}"
        time.sleep(1)


def compare_with_replay(
    stored: dict[str, list[tuple[object, ...]]],
    oracle: dict[str, dict[datetime, tuple[object, ...]]],
    context: str,
) -> int:
    """Every stored candle, of every timeframe, whose interval lies after the first stored minute (which
    began before the feed did) equals the oracle's; returns how many were compared."""
    first_close = stored["1m"][0][0]
    assert isinstance(first_close, datetime)
    compared = 0
    for tf, rows in stored.items():
        length = timedelta(minutes={"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440}[tf])
        for row in rows:
            close = row[0]
            assert isinstance(close, datetime)
            if close - length < first_close:
                continue
            assert close in oracle[tf], (tf, close, context)
            assert row[1:] == oracle[tf][close], (tf, close, context)
            compared += 1
    return compared
