"""OkxRestClient against the real OKX simulator's REST endpoints (subprocess) and a loopback HTTP server.

Oracle: the tape CSV read with the csv module.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.okx.rest import OkxRestClient, http_get
from connectors.okx.wire import OkxRestError
from market.types import ms_from_utc

REPO = Path(__file__).parents[2]
BTC = REPO / "tests" / "data" / "tapes" / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"

with BTC.open(newline="") as _handle:
    ROWS = list(csv.DictReader(_handle))
IDS = [int(row["trade_id"]) for row in ROWS]


@pytest.fixture(scope="module")
def rest_url() -> Iterator[str]:
    """The simulator, with the whole tape played (speed 0), so REST serves every trade."""
    command = [
        sys.executable,
        "-m",
        "connectors.okx.simulator",
        "--tape",
        str(BTC),
        "--port",
        "0",
        "--speed",
        "0",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["rest"]
            deadline = time.monotonic() + 30
            while not asyncio.run(_status(url))["finished"]:
                assert time.monotonic() < deadline, "replay did not finish"
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


async def _status(url: str) -> dict[str, object]:
    status, body = await http_get(f"{url}/sim/v1/status")
    assert status == 200
    result: dict[str, object] = orjson.loads(body)
    return result


def client(url: str, **options: Any) -> OkxRestClient:
    return OkxRestClient(url, **{"min_interval": 0.0, **options})


def test_history_trades_pages_newest_first_by_trade_id(rest_url: str) -> None:
    async def scenario() -> None:
        rest = client(rest_url)
        newest = await rest.history_trades("BTC-USDT")
        assert [t.trade_id for t in newest] == IDS[::-1][:100]
        by_id = {int(r["trade_id"]): r for r in ROWS}
        for trade in newest:
            row = by_id[trade.trade_id]
            assert (trade.price, trade.size) == (Decimal(row["price"]), Decimal(row["size"]))
            assert trade.side == row["side"]
            assert ms_from_utc(trade.ts_event) == int(row["created_time"])
            assert trade.origin == "rest" and trade.symbol == "BTC-USDT"
        older = await rest.history_trades("BTC-USDT", after=IDS[5000], limit=7)
        assert [t.trade_id for t in older] == IDS[4993:5000][::-1]
        window = await rest.history_trades("BTC-USDT", after=IDS[5000], before=IDS[4995])
        assert [t.trade_id for t in window] == IDS[4996:5000][::-1]
        with pytest.raises(ValueError):
            await rest.history_trades("BTC-USDT", limit=101)

    asyncio.run(scenario())


@pytest.mark.parametrize("missing", [0, 1, 99, 100, 101, 250, 1234])
def test_backfill_returns_exactly_the_missing_ids(rest_url: str, missing: int) -> None:
    start = 7000
    after_id, until_id = IDS[start], IDS[start + missing + 1]
    result = asyncio.run(client(rest_url).backfill("BTC-USDT", after_id, until_id))
    assert [t.trade_id for t in result.trades] == IDS[start + 1 : start + missing + 1]
    assert result.complete and result.error is None
    assert result.requests == math.ceil(missing / 100)


def test_backfill_that_cannot_reach_back_is_incomplete(
    rest_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connectors.okx.rest")
    result = asyncio.run(client(rest_url).backfill("BTC-USDT", IDS[0] - 10, IDS[150]))
    assert [t.trade_id for t in result.trades] == IDS[:150]
    assert not result.complete
    # The summary a user sees in the terminal of `up`.
    (summary,) = [r.getMessage() for r in caplog.records if "backfill done" in r.getMessage()]
    assert summary.startswith("okx BTC-USDT backfill done: 150 trades in ")
    assert summary.endswith(", 2 request(s), incomplete (REST history ends)")


def test_envelope_errors(rest_url: str) -> None:
    async def scenario() -> None:
        rest = client(rest_url, retries=3)
        with pytest.raises(OkxRestError) as caught:
            await rest.history_trades("NOPE-USDT")
        assert caught.value.code == "51001" and rest.requests == 1  # permanent: not retried
        result = await rest.backfill("NOPE-USDT", 1, 500)
        assert result.trades == [] and not result.complete and "51001" in (result.error or "")

    asyncio.run(scenario())


def test_rate_limit_answers_are_retried_and_chunked_bodies_read() -> None:
    """A loopback HTTP server answering 429/50011 first, then a chunked body with two trades."""
    rows = [
        {
            "instId": "BTC-USDT",
            "side": r["side"],
            "sz": r["size"],
            "px": r["price"],
            "tradeId": r["trade_id"],
            "ts": r["created_time"],
        }
        for r in ROWS[11:9:-1]
    ]
    ok = orjson.dumps({"code": "0", "msg": "", "data": rows})
    limited = orjson.dumps({"code": "50011", "msg": "Too Many Requests", "data": []})
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        if len(requests) == 1:
            head = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: %d\r\n\r\n" % len(limited)
            writer.write(head + limited)
        else:
            half = len(ok) // 2
            chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, ok[:half], len(ok) - half, ok[half:])
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def scenario() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            rest = client(f"http://127.0.0.1:{port}", retry_backoff=0.01)
            trades = await rest.history_trades("BTC-USDT", after=IDS[12])
        finally:
            server.close()
            await server.wait_closed()
        assert [t.trade_id for t in trades] == [IDS[11], IDS[10]]
        assert rest.requests == 2
        expected = b"GET /api/v5/market/history-trades?instId=BTC-USDT&type=1&limit=100&after="
        assert requests[1].startswith(expected)

    asyncio.run(scenario())


def test_network_errors_are_retried_then_raised() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connections are refused

    async def scenario() -> None:
        rest = client(f"http://127.0.0.1:{port}", retries=2, retry_backoff=0.01)
        with pytest.raises(OSError):
            await rest.history_trades("BTC-USDT")
        assert rest.requests == 3
        result = await rest.backfill("BTC-USDT", 1, 10)
        assert not result.complete and "ConnectionRefusedError" in (result.error or "")

    asyncio.run(scenario())
