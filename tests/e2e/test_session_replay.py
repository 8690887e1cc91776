"""Live equals replay, all real: the OKX simulator replays the BTC-USDT tape with drops, stalls,
duplicates, reorders, malformed frames, poison and poisoned REST answers; the live flow
(`python -m bytewax.run flows.okx`) records its session into database A and is stopped gracefully; the
recording is then replayed (`python -m bytewax.run flows.session`) into an empty database B. Every stored
row must be identical: trades, candles_1m, the rollups of every timeframe, late trades, gaps, rejects,
indicator values, signals (and no candle conflict on either side).

Compared: every column but the insertion times the database stamps itself (`ingested_at`,
`inserted_at`, `late_trades.detected_at`). The other times come from the data: `trades.received_at`,
`late_trades.received_at`, `rejects.received_at` and `gaps.detected_at` are receive times recorded in
the session; `late_trades.lateness`, `gaps.recovery_seconds` and the candles follow from them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sql.migrate import migrate
from tests.conftest import REPO_ROOT, fresh_database
from tests.e2e.livekit import FLOW, TIMEFRAMES, Market, start, stop, wait_for_close
from tests.flows.flowkit import BTC_TAPE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

START_OFFSET = 60  # tape seconds before the live replay starts (earlier trades are REST history)
SPEED = 6
CANDLE = (
    "exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap, first_trade_id,"
    " last_trade_id, complete"
)
COLUMNS = {  # relation: (the columns compared, their order)
    "trades": (
        "exchange, symbol, trade_id, time, price, size, side, received_at, fill_count, seq_id, exch_source,"
        " origin",
        "exchange, symbol, trade_id, time",
    ),
    **{f"candles_{tf}": (CANDLE, "exchange, symbol, time") for tf in TIMEFRAMES},
    "late_trades": (
        "exchange, symbol, trade_id, time, price, size, side, received_at, candle_close, lateness",
        "exchange, symbol, trade_id, time",
    ),
    "gaps": (
        "exchange, symbol, from_trade_id, to_trade_id, from_time, to_time, filled, trades_backfilled, reason,"
        " recovery_seconds, error, detected_at",
        "exchange, symbol, from_trade_id",
    ),
    "rejects": ("received_at, source, reason, raw, raw_digest", "received_at, source, raw_digest"),
    "indicators": (
        "exchange, symbol, timeframe, time, indicator, output, value",
        "exchange, symbol, timeframe, indicator, output, time",
    ),
    "signals": (
        "exchange, symbol, timeframe, time, strategy, action, reason, values",
        "exchange, symbol, timeframe, strategy, time",
    ),
    "candle_conflicts": ("exchange, symbol, time, stored, offered", "exchange, symbol, time"),
}
FAULTS = ("drop: connection aborted", "stall over", "reorder:", "duplicate:", "malformed:", "poison:")
# Short periods, so that the few minutes of the run yield indicator values and signals.
INDICATORS = """
profiles:
  - instruments: "*"
    timeframes: "*"
    indicators:
      - {indicator: EMA, label: ema_fast, params: {timeperiod: 2}}
      - {indicator: EMA, label: ema_slow, params: {timeperiod: 3}}
      - {indicator: RSI, params: {timeperiod: 2}}
      - {indicator: VWAP}
    strategies:
      - {strategy: ema_crossover, params: {fast: 2, slow: 3}}
      - {strategy: rsi_reversion, params: {timeperiod: 2, oversold: 45, overbought: 55, exit_level: 50}}
"""


@pytest.fixture
def replica_url(pg_server: str) -> Iterator[str]:
    """A second fresh database on the same server (database B)."""
    with fresh_database(pg_server) as url:
        yield url


@contextmanager
def simulator(log: Path, *args: str) -> Iterator[dict[str, str]]:
    """The simulator replaying the BTC tape rebased to now, its log (every fault it injects) to ``log``;
    yields the settings pointing at it."""
    argv = [sys.executable, "-m", "connectors.okx.simulator", "--tape", str(BTC_TAPE), "--rebase-now", *args]
    with log.open("w") as err:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=dict(os.environ),
            text=True,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield {"OKX_WS_URL": ready["ws_public"], "OKX_REST_URL": ready["rest"]}
    finally:
        stop(process)
        assert process.stdout is not None
        process.stdout.close()


def stored(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return {
            table: [tuple(row) for row in conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")]
            for table, (columns, order) in COLUMNS.items()
        }


def test_a_recorded_live_session_replays_row_for_row(
    pg_url: str, replica_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    migrate(replica_url)
    indicators = tmp_path / "indicators.yaml"
    indicators.write_text(INDICATORS)
    faults = [
        *("--drop-every-seconds", "25"),  # each connection: dropped after 25 s, REST backfills the hole
        *("--stall-after-messages", "400", "--stall-seconds", "8"),  # ... and silent for 8 s before that
        *("--duplicate-every", "53", "--reorder-every", "71", "--malformed-every", "301"),
        *("--poison-every", "211", "--poison", "behind", "--poison", "huge-price", "--rest-poison", "id"),
    ]
    market_log = tmp_path / "simulator.log"
    with simulator(market_log, "--start-offset", str(START_OFFSET), "--speed", str(SPEED), *faults) as okx:
        session = run_live(okx, pg_url, redis_url, indicators, tmp_path)
    faults_seen = market_log.read_text()
    for fault in FAULTS:
        assert fault in faults_seen, fault

    replay_log = tmp_path / "replay.log"
    replay_env = {
        **common(redis_url, indicators),
        "DATABASE_URL": replica_url,
        "DATA_DIR": str(tmp_path / "replay"),
        "CANDLE_GRACE": "7",  # not used: the session's recorded grace is
        "SESSION_FILES": str(session),
    }
    replay = start([sys.executable, "-m", "bytewax.run", "flows.session"], replay_env, replay_log)
    try:
        assert replay.wait(300) == 0, replay_log.read_text()[-3000:]
    finally:
        stop(replay)
    assert "the database does not end where the recorded session began" not in replay_log.read_text()

    live, again = stored(pg_url), stored(replica_url)
    for table in COLUMNS:
        assert again[table] == live[table], (table, len(live[table]), len(again[table]))
    counts = {table: len(rows) for table, rows in live.items()}
    assert counts["trades"] > 5000 and counts["candles_1m"] >= 8, counts
    assert {row[8] for row in live["gaps"]} >= {"reconnect"}, counts
    assert {row[1] for row in live["rejects"]} >= {"okx-ws", "okx-rest"}, counts
    assert counts["late_trades"] >= 1 and counts["indicators"] > 0 and counts["signals"] > 0, counts
    assert counts["candle_conflicts"] == 0, counts


def common(redis_url: str, indicators: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "INSTRUMENTS": "BTC-USDT",
        "INDICATORS_CONFIG": str(indicators),
        "LOG_LEVEL": "INFO",
    }


def run_live(okx: dict[str, str], url: str, redis_url: str, indicators: Path, tmp_path: Path) -> Path:
    """The live flow, recording, until the tape's last full minute is stored; stopped gracefully.
    Returns the recorded session's directory."""
    env = {
        **common(redis_url, indicators),
        **okx,
        "DATABASE_URL": url,
        "DATA_DIR": str(tmp_path / "live"),
        "CANDLE_GRACE": "2",
        "FEED__FUTURE_TOLERANCE": "3600",  # faster than real time, the tape's times run ahead of the clock
        "FEED__MAX_BEHIND": "7200",  # the "behind" poison (an hour early) is then a late trade, not a reject
        "RECORDING__ENABLED": "true",
        "RECORDING__ROTATE_MB": "1",
    }
    log = tmp_path / "live.log"
    flow = start(FLOW, env, log)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            market = Market.of_when_stored(BTC_TAPE, conn, 90)
            wait_for_close(conn, market.last_full_close, flow, log, 420)
    finally:
        stop(flow)  # SIGINT: the source ends its input, the sinks flush, the run returns
    assert flow.returncode == 0, log.read_text()[-3000:]
    (session,) = (tmp_path / "live" / "sessions").iterdir()
    return session
