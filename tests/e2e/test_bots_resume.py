"""A paper-trading bot in the live flow, all real, killed and restarted in the middle: the OKX simulator
replays the BTC-USDT tape rebased to now, the live flow (`python -m bytewax.run flows.okx`) runs, a bot
(ema_crossover 2/3 on 1m, which trades often) is added and started through the control store while it
runs, the flow is killed with SIGKILL after the bot's first candles and started again. At the end the
bot's equity has one row per stored 1m candle from its first to its last (none missed, none twice), and
its fills equal a backtest (``flows.backtest.run_backtest``) over those stored candles with the same
configuration."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from configs.bots import parse_bot_config
from configs.indicators import parse_indicator_config
from connectors.control_store import ControlStore
from connectors.memory import BatchSource, in_batches
from connectors.resume import StoredHistory
from flows.backtest import run_backtest
from sql.migrate import migrate
from tests.e2e.livekit import FLOW, Market, start, start_simulator, stop
from tests.flows.flowkit import BTC_TAPE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]

COPIES = 3
SPEED = 10
BOT = {
    "name": "ema-fast",
    "symbol": "BTC-USDT",
    "timeframe": "1m",
    "strategy": "ema_crossover",
    "params": {"fast": 2, "slow": 3},
    "account": {"cash": 10_000, "fraction": 1.0, "fee_bps": 10, "slippage_bps": 2, "short": True},
}


def longer_tape(directory: Path) -> Path:
    """The BTC-USDT tape three times over, each copy a whole number of minutes after the previous one
    (about 35 minutes of a dense market: enough candles for the bot to trade before and after a kill)."""
    lines = BTC_TAPE.read_text().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    ids = [int(r[1]) for r in rows]
    times = [int(r[5]) for r in rows]
    shift_ms = ((max(times) - min(times)) // 60_000 + 2) * 60_000
    shift_id = max(ids) - min(ids) + 1
    path = directory / BTC_TAPE.name
    with path.open("w") as out:
        out.write(header + "\n")
        for k in range(COPIES):
            for r in rows:
                out.write(
                    ",".join([r[0], str(int(r[1]) + k * shift_id), *r[2:5], str(int(r[5]) + k * shift_ms)])
                    + "\n"
                )
    return path


def wait_until(what: str, check: Any, flow: Any, log: Path, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert flow.poll() is None, f"the flow exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: not in time\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    return value


def rows(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # fixed table names only
    return int(row[0]) if row else 0


def test_a_bot_killed_and_restarted_takes_the_fills_of_a_backtest_over_the_stored_candles(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    tape = longer_tape(tmp_path)
    simulator, okx = start_simulator(tape, "--speed", str(SPEED))
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "INSTRUMENTS": "BTC-USDT",
        "CANDLE_GRACE": "6",
        "FEED__FUTURE_TOLERANCE": "3600",  # faster than real time, the tape's times run ahead of the clock
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "INFO",
        **okx,
    }
    log = tmp_path / "flow.log"
    config = parse_bot_config(BOT)
    flow = start(FLOW, env, log)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn, ControlStore(pg_url) as store:
            market = Market.of_when_stored(tape, conn, 60)
            store.add_bot(config)
            store.start_bot(config.name)  # read by the running flow within 0.5 s
            wait_until("the bot's first fill", lambda: rows(conn, "bot_fills") >= 1, flow, log, 240)
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
            killed_at = conn.execute("SELECT max(time) FROM bot_equity").fetchone()
            time.sleep(2)  # a few tape seconds pass: the bot misses candles
            flow = start(FLOW, env, log)
            last = market.last_full_close
            wait_until(
                "the bot at the market's last full minute",
                lambda: conn.execute("SELECT 1 FROM bot_equity WHERE time >= %s", (last,)).fetchone(),
                flow,
                log,
                360,
            )
            fills = conn.execute(
                "SELECT time, signal_time, side, price, quantity, fee FROM bot_fills ORDER BY time, seq"
            ).fetchall()
            equity = conn.execute(
                "SELECT time, close, cash, position, equity FROM bot_equity ORDER BY time"
            ).fetchall()
    finally:
        stop(flow)
        stop(simulator)

    first, last_close = equity[0][0], equity[-1][0]
    minute = timedelta(minutes=1)
    candles = list(StoredHistory(pg_url).range("okx", "BTC-USDT", "1m", first - minute, last_close))
    assert [c.close_time for c in candles] == [row[0] for row in equity]  # every close once
    strategy = parse_indicator_config(
        {"profiles": [{"strategies": [{"strategy": "ema_crossover", "params": {"fast": 2, "slow": 3}}]}]}
    )
    (expected,) = run_backtest(BatchSource(in_batches(candles, 50)), strategy, config.account_settings())
    assert [tuple(r) for r in fills] == [
        (f.time, f.signal_time, f.side, f.price, f.quantity, f.fee) for f in expected.fills
    ]
    assert [tuple(r) for r in equity] == [
        (p.time, p.close, p.cash, p.position, p.equity) for p in expected.equity
    ]
    assert killed_at is not None and killed_at[0] is not None
    assert any(f.time > killed_at[0] for f in expected.fills), "the bot should trade after the restart too"
