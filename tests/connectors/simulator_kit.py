"""The in-process OKX simulator and a websocket/HTTP client for its tests, with the real OKX messages
(tests/data/okx-samples) they compare against.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from connectors.okx.simulator import Simulator, SimulatorConfig

DATA = Path(__file__).parents[1] / "data"
SAMPLES = DATA / "okx-samples"
XRP = DATA / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
BTC = DATA / "tapes" / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
MATIC = DATA / "tapes" / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"
REPO = Path(__file__).parents[2]


# ----------------------------------------------------------------------------- oracles


def sample_messages(name: str) -> list[tuple[str, dict[str, Any]]]:
    lines = [json.loads(line) for line in (SAMPLES / name).read_text().splitlines()]
    return [(line["src"], line["msg"]) for line in lines]


def sample_key_orders(name: str, event: str | None = None) -> set[tuple[str, ...]]:
    return {tuple(msg) for _, msg in sample_messages(name) if event is None or msg.get("event") == event}


def sample_item_keys(name: str) -> set[tuple[str, ...]]:
    return {tuple(msg["data"][0]) for _, msg in sample_messages(name)}


# ----------------------------------------------------------------------------- harness


@asynccontextmanager
async def simulator(*tapes: Path, **options: Any) -> AsyncIterator[Simulator]:
    sim = Simulator(SimulatorConfig(tapes=tapes, **options))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def public(sim: Simulator) -> str:
    return sim.urls["ws_public"]


def business(sim: Simulator) -> str:
    return sim.urls["ws_business"]


async def recv_json(ws: ClientConnection, within: float = 10) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def subscribe(ws: ClientConnection, *args: tuple[str, str], request_id: str | None = None) -> None:
    request: dict[str, Any] = {"op": "subscribe", "args": [{"channel": c, "instId": i} for c, i in args]}
    if request_id is not None:
        request["id"] = request_id
    await ws.send(json.dumps(request))


async def http_get(url: str) -> tuple[int, Any]:
    def get() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    return await asyncio.to_thread(get)


async def wait_finished(sim: Simulator) -> None:
    await asyncio.wait_for(sim.wait_finished(), 60)


async def no_frame_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


@contextmanager
def cli_simulator(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    stderr = (tmp_path / "simulator.log").open("w")
    command = [sys.executable, "-m", "connectors.okx.simulator", "--port", "0", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (
        stderr,
        subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["ready"] is True
            yield proc, ready
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
