"""Poison is rejected, never obeyed, all real: at real speed the simulator slips a hostile frame after
every 40th push (each kind in turn: a trade stamped an hour ahead or behind, an id 10^12 ahead, an
instrument never subscribed, a 400-digit price, a count beyond int4, 1001 trades in one push, a 2 MiB
and a 10 MiB frame) and forges the first push of every subscription. Through the live flow
(`python -m bytewax.run flows.okx`) each becomes a `rejects` row; the stored trades are exactly the
market's, every candle equals a clean replay of the tape, no trade is late, and the flow stays up
with bounded memory."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from connectors.okx.simulator.faults import POISON_KINDS
from sql.migrate import migrate
from tests.e2e.livekit import (
    FLOW,
    Market,
    compare_with_replay,
    start,
    start_simulator,
    stop,
    stored_candles,
    stored_trades,
    wait_for_close,
)
from tests.flows.flowkit import BTC_TAPE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_hostile_frames_become_rejects_and_change_no_candle(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    poison = [arg for kind in POISON_KINDS for arg in ("--poison", kind)]
    simulator, okx = start_simulator(
        BTC_TAPE,
        "--start-offset",
        "540",
        "--speed",
        "1",
        "--poison-every",
        "40",
        *poison,
        "--poison-first",
        "id-ahead",
    )
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "INSTRUMENTS": "BTC-USDT",
        "CANDLE_GRACE": "2",
        "DATA_DIR": str(tmp_path / "data"),
        **okx,
    }
    log = tmp_path / "flow.log"
    flow = start(FLOW, env, log)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            market = Market.of_when_stored(BTC_TAPE, conn, 60)
            wait_for_close(conn, market.last_full_close, flow, log, 240)
            memory = rss_mb(flow.pid)
            trades = stored_trades(conn, "BTC-USDT", market.last_full_close)
            stored = stored_candles(conn, "BTC-USDT")
            symbols = conn.execute("SELECT DISTINCT symbol FROM trades").fetchall()
            rejects = conn.execute("SELECT source, reason, raw FROM rejects").fetchall()
            late = conn.execute("SELECT count(*) FROM late_trades").fetchone()
    finally:
        stop(flow)
        stop(simulator)
    text = log.read_text()[-3000:]
    assert symbols == [("BTC-USDT",)]
    assert trades == market.trades_between(int(trades[0][0]), market.last_full_close), text
    assert compare_with_replay(stored, market.replay(tmp_path), "poison") >= 1
    assert late == (0,)
    # one reject at least per kind that reached the flow (the 10 MiB frame closes the socket: its reject
    # has no bytes); the 400-digit price and the foreign instrument are kept as received
    assert len(rejects) >= len(POISON_KINDS), rejects
    assert {source for source, _, _ in rejects} <= {"okx-ws", "okx-rest"}
    assert any(b"POISON-USDT" in bytes(raw) for _, _, raw in rejects)
    assert any(b"9" * 400 in bytes(raw) for _, _, raw in rejects)
    assert memory < 600, f"flow RSS {memory:.0f} MB"
