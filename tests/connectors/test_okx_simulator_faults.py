"""The OKX simulator's injected faults: duplicates, reordering, malformed and poison frames, stalls, drops,
64008 notices, and a clean SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from connectors.okx.parser import parse_frame
from connectors.okx.simulator import FaultConfig
from market.types import Rejected
from tests.connectors.simulator_kit import (
    BTC,
    MATIC,
    cli_simulator,
    http_get,
    public,
    recv_json,
    sample_key_orders,
    simulator,
    subscribe,
    wait_finished,
)
from tests.support.tapes import tape_rows

# ----------------------------------------------------------------------------- faults


async def pushes_until_closed(ws: ClientConnection, limit: float = 10) -> list[str | bytes]:
    frames: list[str | bytes] = []
    try:
        while True:
            frames.append(await asyncio.wait_for(ws.recv(), limit))
    except ConnectionClosed:
        return frames


def fault_run(faults: FaultConfig, pushes: int, **options: Any) -> tuple[list[Any], list[float]]:
    """Subscribe to BTC-USDT trades at speed 0 and return ``pushes`` frames (parsed) and their times."""

    async def scenario() -> tuple[list[Any], list[float]]:
        async with simulator(BTC, speed=0, wait_for_subscriber=True, faults=faults, **options) as sim:
            async with connect(public(sim), max_queue=None) as ws:
                await subscribe(ws, ("trades", "BTC-USDT"))
                await recv_json(ws)
                frames: list[Any] = []
                times: list[float] = []
                for _ in range(pushes):
                    frames.append(parse_frame(await asyncio.wait_for(ws.recv(), 10), datetime.now(UTC)))
                    times.append(time.monotonic())
        return frames, times

    return asyncio.run(scenario())


def _ids(frames: list[Any]) -> list[int]:
    return [t.trade_id for f in frames if isinstance(f, list) for t in f]


def test_fault_duplicate_and_reorder_and_malformed() -> None:
    frames, _ = fault_run(FaultConfig(duplicate_every=7), 30)
    ids = _ids(frames)
    assert ids[6] == ids[7] and len(set(ids[:8])) == 7
    frames, _ = fault_run(FaultConfig(reorder_every=5), 30)
    ids = _ids(frames)
    assert ids[3] + 2 == ids[4] and ids[5] + 1 == ids[4] and ids[6] == ids[4] + 1
    frames, _ = fault_run(FaultConfig(malformed_every=10), 44)
    rejected = [i for i, f in enumerate(frames) if isinstance(f, Rejected)]
    assert rejected == [10, 21, 32, 43]
    ids = _ids(frames)
    assert ids == list(range(ids[0], ids[0] + 40))  # no trade lost


def test_fault_stall_keeps_the_socket_open_but_silent() -> None:
    frames, times = fault_run(FaultConfig(stall_after_messages=20, stall_seconds=0.8), 40)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[19] >= 0.7 and max(gaps[:19] + gaps[20:]) < 0.5
    assert _ids(frames) == list(range(_ids(frames)[0], _ids(frames)[0] + 40))


@pytest.mark.slow
def test_fault_drops_and_notice() -> None:
    async def scenario() -> None:
        faults = FaultConfig(drop_after_messages=50)
        async with simulator(BTC, speed=0, wait_for_subscriber=True, faults=faults) as sim:
            async with connect(public(sim), max_queue=None) as ws:
                await subscribe(ws, ("trades", "BTC-USDT"))
                frames = await pushes_until_closed(ws)
                assert len(frames) == 1 + 50 and ws.close_code == 1006  # aborted: no close frame
            await wait_finished(sim)
            async with connect(public(sim)) as ws:  # missed trades are not replayed on reconnect
                await subscribe(ws, ("trades", "BTC-USDT"))
                await recv_json(ws)
                assert (await recv_json(ws))["data"][0]["tradeId"] == tape_rows(BTC)[-1]["trade_id"]
        async with simulator(MATIC, speed=0, faults=FaultConfig(drop_every_seconds=0.3)) as sim:
            async with connect(public(sim)) as ws:
                started = time.monotonic()
                with pytest.raises(ConnectionClosedError):
                    await asyncio.wait_for(ws.recv(), 5)
                assert 0.2 < time.monotonic() - started < 3
        async with simulator(MATIC, speed=0, faults=FaultConfig(notice_then_close=0.3)) as sim:
            await wait_finished(sim)
            async with connect(public(sim)) as ws:
                await subscribe(ws, ("trades", "MATIC-USDT-SWAP"))
                frames = await pushes_until_closed(ws)
                notice = json.loads(frames[-1])
                assert tuple(notice) in sample_key_orders("events-notice.jsonl")
                assert (notice["event"], notice["code"]) == ("notice", "64008")
                assert ws.close_code == 1012
        async with simulator(BTC, speed=0, wait_for_subscriber=True, max_queue=100) as sim:
            async with connect(public(sim), max_queue=None) as ws:
                await subscribe(ws, ("trades", "BTC-USDT"))
                await pushes_until_closed(ws)
                assert ws.close_code == 4005

    asyncio.run(scenario())


def test_sigterm_closes_clients_with_1001_and_exits_0(tmp_path: Path) -> None:
    async def client(url: str, proc: subprocess.Popen[str]) -> int | None:
        async with connect(url) as ws:
            await subscribe(ws, ("trades", "MATIC-USDT-SWAP"))
            await recv_json(ws)
            proc.send_signal(signal.SIGTERM)
            await pushes_until_closed(ws)
            return ws.close_code

    with cli_simulator(tmp_path, "--tape", str(MATIC), "--speed", "0") as (proc, ready):
        assert set(ready) == {"ready", "ws_public", "ws_business", "rest"}
        assert asyncio.run(client(ready["ws_public"], proc)) == 1001
        assert proc.wait(timeout=20) == 0
    log = (tmp_path / "simulator.log").read_text()
    assert "connect conn" in log and "disconnect conn" in log


def test_fault_poison_frames_follow_every_nth_push() -> None:
    kinds = ("future", "behind", "id-ahead", "foreign", "huge-price", "big-count", "many-trades")
    frames, _ = fault_run(FaultConfig(poison_every=2, poison=kinds), 3 * len(kinds))
    clean = [f for i, f in enumerate(frames) if i % 3 != 2]
    hostile = [f for i, f in enumerate(frames) if i % 3 == 2]
    rows = {int(r["trade_id"]): r for r in tape_rows(BTC)}
    assert _ids(clean) == list(range(_ids(clean)[0], _ids(clean)[0] + len(clean)))  # nothing lost
    hour = 3_600_000
    for kind, frame, before in zip(kinds, hostile, clean[1::2], strict=True):
        last = before[-1]
        real = rows[last.trade_id]
        bad = frame[0]
        ms = ms_of(bad.ts_event)
        if kind == "future":
            assert (bad.trade_id, ms) == (last.trade_id + 1, int(real["created_time"]) + hour)
        elif kind == "behind":
            assert (bad.trade_id, ms) == (last.trade_id + 1, int(real["created_time"]) - hour)
        elif kind == "id-ahead":
            assert bad.trade_id == last.trade_id + 10**12
        elif kind == "foreign":
            assert (bad.symbol, bad.trade_id) == ("POISON-USDT", last.trade_id)
        elif kind == "huge-price":
            assert bad.price == Decimal("9" * 400)
        elif kind == "big-count":
            assert bad.count == 2**32
        else:
            assert len(frame) == 1001 and {t.trade_id for t in frame} == {last.trade_id + 1}


def ms_of(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def test_fault_poison_first_big_frames_and_rest_poison() -> None:
    rows = tape_rows(BTC)

    async def scenario() -> None:
        faults = FaultConfig(poison_first="id-ahead", poison_every=1, poison=("big-frame",), rest_poison="id")
        async with simulator(BTC, speed=0, wait_for_subscriber=True, start_offset=60, faults=faults) as sim:
            async with connect(public(sim), max_size=None, max_queue=None) as ws:
                await subscribe(ws, ("trades", "BTC-USDT"))
                await recv_json(ws)
                forged, snapshot = await recv_json(ws), await recv_json(ws)
                real = int(snapshot["data"][0]["tradeId"])
                assert int(forged["data"][0]["tradeId"]) == real + 10**12
                big = await asyncio.wait_for(ws.recv(), 10)
                assert len(big) > 2 * 1024 * 1024 and json.loads(big)["data"][0]["tradeId"] == str(real)
            before = int(rows[50]["trade_id"])
            after = int(rows[80]["trade_id"])
            query = f"instId=BTC-USDT&after={after}&before={before}"
            _, body = await http_get(f"{sim.urls['rest']}/api/v5/market/history-trades?{query}")
            ids = [int(row["tradeId"]) for row in body["data"]]
            assert ids == [after + 10**9] + [int(r["trade_id"]) for r in reversed(rows[51:80])]

    asyncio.run(scenario())
