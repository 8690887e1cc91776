"""The OKX simulator over real loopback websockets and HTTP, in-process and as ``python -m``.

Oracles are independent of the simulator: real OKX messages (tests/data/okx-samples), the tapes read with
the csv module, and the exchange's own klines for the XRP-ETH tape (tests/data/SOURCES.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from connectors.okx.parser import parse_frame
from connectors.okx.simulator import FaultConfig, Simulator, SimulatorConfig, parse_args
from connectors.okx.simulator.continuation import rebase
from market.types import Rejected
from tests.support.tapes import tape_rows

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


# ----------------------------------------------------------------------------- shapes and requests


def test_acks_errors_and_pushes_have_real_okx_shapes() -> None:
    async def scenario() -> None:
        async with simulator(MATIC, speed=0, ct_val={"MATIC-USDT-SWAP": Decimal(10)}) as sim:
            await wait_finished(sim)
            async with connect(public(sim)) as ws:
                await subscribe(ws, ("trades", "MATIC-USDT-SWAP"))
                ack = await recv_json(ws)
                push = await recv_json(ws)
                await subscribe(ws, ("tickers", "MATIC-USDT-SWAP"), request_id="1512")
                ack_with_id = await recv_json(ws)
                await ws.send(
                    json.dumps(
                        {"op": "unsubscribe", "args": [{"channel": "trades", "instId": "MATIC-USDT-SWAP"}]}
                    )
                )
                unsub = await recv_json(ws)
                await subscribe(ws, ("candle1m", "MATIC-USDT-SWAP"))
                error = await recv_json(ws)
            async with connect(business(sim)) as ws:
                await subscribe(ws, ("trades-all", "MATIC-USDT-SWAP"), ("candle1m", "MATIC-USDT-SWAP"))
                frames = [await recv_json(ws) for _ in range(4)]
        # Key order of the live 2026 ack and error; the id-echoing ack equals OKX's documented example.
        assert tuple(ack) in sample_key_orders("events-subscribe-unsubscribe.jsonl", "subscribe")
        assert tuple(ack) == ("event", "arg", "connId") and ack["arg"] == {
            "channel": "trades",
            "instId": "MATIC-USDT-SWAP",
        }
        assert tuple(ack_with_id) == ("id", "event", "arg", "connId") and ack_with_id["id"] == "1512"
        assert tuple(unsub) in sample_key_orders("events-subscribe-unsubscribe.jsonl", "unsubscribe")
        assert unsub["event"] == "unsubscribe"
        assert tuple(error) in sample_key_orders("events-error.jsonl")
        assert len({ack["connId"], ack_with_id["connId"], unsub["connId"], error["connId"]}) == 1
        assert len(ack["connId"]) == 8 and int(ack["connId"], 16) >= 0
        # Push item fields exactly as the live 2026 trades message, and the exchange's value types.
        (item,) = push["data"]
        assert tuple(item) in sample_item_keys("trades.jsonl")
        assert tuple(item) == ("instId", "tradeId", "px", "sz", "side", "ts", "count", "source", "seqId")
        assert isinstance(item["seqId"], int) and all(isinstance(item[k], str) for k in tuple(item)[:-1])
        assert push["arg"] == {"channel": "trades", "instId": "MATIC-USDT-SWAP"}
        acks = [f for f in frames if "event" in f]
        assert len(acks) == 2 and acks[0]["connId"] == acks[1]["connId"] != ack["connId"]
        trades_all = next(f for f in frames if "data" in f and f["arg"]["channel"] == "trades-all")
        assert tuple(trades_all["data"][0]) in sample_item_keys("trades-all.jsonl")
        candle = next(f for f in frames if "data" in f and f["arg"]["channel"] == "candle1m")
        (row,) = candle["data"]
        assert len(row) == 9 and all(isinstance(v, str) for v in row)
        # OKX's own candle for that minute (archive, ctVal 10): vol, volCcy, volCcyQuote.
        (okx,) = tape_rows(DATA / "tapes" / "MATIC-USDT-SWAP-candle-1m-2023-08-20T1601Z.csv")
        assert row[0] == okx["open_time_ms"]
        assert [Decimal(v) for v in row[1:8]] == [
            Decimal(okx[k])
            for k in ("open", "high", "low", "close", "vol_contracts", "vol_ccy_base", "vol_ccy_quote")
        ]
        assert row[8] == "0"  # the tape ends inside the minute: never confirmed (TIME.md rule 9)

    asyncio.run(scenario())


def test_legacy_fields_shape_matches_2021_2022_captures() -> None:
    async def scenario() -> None:
        async with simulator(MATIC, speed=0, legacy_fields=True) as sim:
            await wait_finished(sim)
            async with connect(public(sim)) as ws:
                await subscribe(ws, ("trades", "MATIC-USDT-SWAP"))
                ack, push = await recv_json(ws), await recv_json(ws)
        assert tuple(ack) == ("event", "arg")  # the cryptofeed 2021-22 acks
        assert tuple(push["data"][0]) == ("instId", "tradeId", "px", "sz", "side", "ts")
        assert tuple(push["data"][0]) in sample_item_keys("trades.jsonl")

    asyncio.run(scenario())


def test_ping_pong_and_bad_requests() -> None:
    async def scenario() -> None:
        async with simulator(MATIC, speed=0) as sim:
            async with connect(public(sim)) as ws:
                await ws.send("ping")
                assert await asyncio.wait_for(ws.recv(), 5) == "pong"
                await ws.send("{not json")
                assert (await recv_json(ws))["code"] == "60012"
                await ws.send(json.dumps({"op": "login", "args": []}))
                assert (await recv_json(ws))["code"] == "60019"
                await ws.send(json.dumps({"op": "subscribe", "args": ["trades"]}))
                assert (await recv_json(ws))["code"] == "60013"
                await subscribe(ws, ("trades", "DOGE-USDT"))
                unknown = await recv_json(ws)
                await subscribe(ws, ("trades-all", "MATIC-USDT-SWAP"), request_id="77")
                wrong_url = await recv_json(ws)
            async with connect(business(sim)) as ws:
                await subscribe(ws, ("trades", "MATIC-USDT-SWAP"))
                business_trades = await recv_json(ws)
        assert unknown["code"] == "60018" and "DOGE-USDT" in unknown["msg"]
        assert wrong_url["code"] == "60018" and wrong_url["id"] == "77" and "trades-all" in wrong_url["msg"]
        assert business_trades["code"] == "60018"

    asyncio.run(scenario())


def test_first_push_after_subscribing_is_the_latest_past_trade() -> None:
    last = tape_rows(MATIC)[-1]

    async def scenario() -> None:
        async with simulator(MATIC, speed=0) as sim:
            await wait_finished(sim)
            async with connect(public(sim)) as ws:
                await subscribe(ws, ("trades", "MATIC-USDT-SWAP"))
                assert (await recv_json(ws))["event"] == "subscribe"
                (item,) = (await recv_json(ws))["data"]
                assert await no_frame_within(ws, 0.3)  # the tape is over: nothing else
        assert (item["tradeId"], item["px"], item["sz"], item["side"], item["ts"]) == (
            last["trade_id"],
            last["price"],
            last["size"],
            last["side"],
            last["created_time"],
        )

    asyncio.run(scenario())


def test_idle_connection_is_closed_with_4004() -> None:
    async def scenario() -> None:
        async with simulator(MATIC, speed=0, idle_timeout=0.4) as sim:
            await wait_finished(sim)
            async with connect(public(sim)) as ws:  # no subscription at all
                started = time.monotonic()
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert 0.3 < time.monotonic() - started < 3
                assert ws.close_code == 4004 and ws.close_reason == "No data received in 30s"
            async with connect(public(sim)) as ws:  # subscribed to a quiet channel, kept alive by pings
                await subscribe(ws, ("trades", "MATIC-USDT-SWAP"))
                await recv_json(ws)
                await recv_json(ws)
                for _ in range(8):
                    await asyncio.sleep(0.15)
                    await ws.send("ping")
                    assert await asyncio.wait_for(ws.recv(), 5) == "pong"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 4004

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- the replay


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


@pytest.mark.slow
def test_speed_zero_replays_exactly_the_tape_in_order(tmp_path: Path) -> None:
    rows = tape_rows(BTC)

    async def scenario(url: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async with connect(url, max_queue=None) as ws:
            await subscribe(ws, ("trades", "BTC-USDT"))
            assert (await recv_json(ws))["event"] == "subscribe"
            started = time.perf_counter()
            while len(items) < len(rows):
                items.extend((await recv_json(ws))["data"])
            elapsed = time.perf_counter() - started
            assert await no_frame_within(ws, 0.3)
        print(f"simulator: {len(items)} pushes in {elapsed:.2f} s = {len(items) / elapsed:,.0f} pushes/s")
        return items

    with cli_simulator(tmp_path, "--tape", str(BTC), "--speed", "0", "--wait-for-subscriber") as (_, ready):
        items = asyncio.run(scenario(ready["ws_public"]))
    got = [(i["tradeId"], i["px"], i["sz"], i["side"], i["ts"], i["count"]) for i in items]
    assert got == [(r["trade_id"], r["price"], r["size"], r["side"], r["created_time"], "1") for r in rows]
    ids = [int(i["tradeId"]) for i in items]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


@pytest.mark.slow
def test_aggregation_counts_fills_and_sums_sizes() -> None:
    rows = {int(r["trade_id"]): r for r in tape_rows(BTC)}
    last_id = max(rows)

    async def scenario() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async with simulator(BTC, speed=0, aggregate=True, wait_for_subscriber=True) as sim:
            async with connect(public(sim), max_queue=None) as ws:
                await subscribe(ws, ("trades", "BTC-USDT"))
                await recv_json(ws)
                while not items or int(items[-1]["tradeId"]) != last_id:
                    items.extend((await recv_json(ws))["data"])
        return items

    items = asyncio.run(scenario())
    assert sum(int(i["count"]) for i in items) == len(rows)
    assert any(int(i["count"]) > 1 for i in items)
    previous = min(rows) - 1
    for item in items:
        trade_id, count = int(item["tradeId"]), int(item["count"])
        assert trade_id - count == previous  # PROTOCOL-NOTES 4.1 continuity rule
        fills = [rows[i] for i in range(trade_id - count + 1, trade_id + 1)]
        assert Decimal(item["sz"]) == sum(Decimal(f["size"]) for f in fills)
        # one taker at one price and one time: every fill has the push's price, side and ts
        assert {(f["price"], f["side"], f["created_time"]) for f in fills} == {
            (fills[0]["price"], item["side"], item["ts"])
        }
        assert Decimal(item["px"]) == Decimal(fills[0]["price"])
        previous = trade_id


@pytest.mark.slow
def test_rest_pagination_walks_the_tape_back_exactly() -> None:
    rows = tape_rows(BTC)
    base = "/api/v5/market"

    async def scenario() -> None:
        async with simulator(BTC, speed=0) as sim:
            await wait_finished(sim)
            rest = sim.urls["rest"]
            status, latest = await http_get(f"{rest}{base}/trades?instId=BTC-USDT&limit=500")
            assert status == 200 and (latest["code"], latest["msg"]) == ("0", "")
            assert [t["tradeId"] for t in latest["data"]] == [r["trade_id"] for r in rows[-500:]][::-1]
            assert tuple(latest["data"][0]) in {
                tuple(m["data"][0])
                for m in (
                    json.loads(line)["body"]
                    for line in (SAMPLES / "rest-market-trades.jsonl").read_text().splitlines()
                    if '"body"' in line
                )
            }
            _, default = await http_get(f"{rest}{base}/trades?instId=BTC-USDT")
            assert len(default["data"]) == 100
            walked: list[dict[str, str]] = []
            page = (await http_get(f"{rest}{base}/history-trades?instId=BTC-USDT&type=1"))[1]["data"]
            while page:
                assert len(page) <= 100
                walked.extend(page)
                after = page[-1]["tradeId"]
                query = f"history-trades?instId=BTC-USDT&after={after}"
                page = (await http_get(f"{rest}{base}/{query}"))[1]["data"]
            assert [(t["tradeId"], t["px"], t["sz"], t["side"], t["ts"]) for t in reversed(walked)] == [
                (r["trade_id"], r["price"], r["size"], r["side"], r["created_time"]) for r in rows
            ]
            before = rows[-300]["trade_id"]
            _, newest = await http_get(f"{rest}{base}/history-trades?instId=BTC-USDT&before={before}&limit=5")
            assert [t["tradeId"] for t in newest["data"]] == [r["trade_id"] for r in rows[-5:]][::-1]
            window = f"before={rows[10]['trade_id']}&after={rows[14]['trade_id']}"
            _, between = await http_get(f"{rest}{base}/history-trades?instId=BTC-USDT&{window}")
            assert [t["tradeId"] for t in between["data"]] == [r["trade_id"] for r in rows[11:14]][::-1]
            by_time = f"type=2&after={rows[100]['created_time']}&limit=3"
            _, older = await http_get(f"{rest}{base}/history-trades?instId=BTC-USDT&{by_time}")
            older_rows = [r for r in rows if int(r["created_time"]) < int(rows[100]["created_time"])][-3:]
            assert [t["tradeId"] for t in older["data"]] == [r["trade_id"] for r in older_rows][::-1]
            for query, status_code, code in [
                ("trades?limit=5", 400, "50014"),
                ("trades?instId=DOGE-USDT", 400, "51001"),
                ("trades?instId=BTC-USDT&limit=501", 400, "51000"),
                ("history-trades?instId=BTC-USDT&limit=101", 400, "51000"),
                ("history-trades?instId=BTC-USDT&after=abc", 400, "51000"),
            ]:
                status, body = await http_get(f"{rest}{base}/{query}")
                assert (status, body["code"], body["data"]) == (status_code, code, [])

    asyncio.run(scenario())


def test_rest_serves_only_trades_already_played() -> None:
    rows = tape_rows(BTC)
    start = int(rows[0]["created_time"]) + 60_000
    played = [r for r in rows if int(r["created_time"]) < start]

    async def scenario() -> None:
        async with simulator(BTC, speed=1, start_offset=60, wait_for_subscriber=True) as sim:
            _, body = await http_get(f"{sim.urls['rest']}/api/v5/market/trades?instId=BTC-USDT&limit=1")
            assert body["data"][0]["tradeId"] == played[-1]["trade_id"]
            async with connect(public(sim)) as ws:  # the latest past trade is the first push
                await subscribe(ws, ("trades", "BTC-USDT"))
                await recv_json(ws)
                assert (await recv_json(ws))["data"][0]["tradeId"] == played[-1]["trade_id"]
                assert (await recv_json(ws))["data"][0]["tradeId"] == rows[len(played)]["trade_id"]

    asyncio.run(scenario())


def test_rebase_now_stamps_trades_at_the_current_time() -> None:
    tape_ts = {row["trade_id"]: int(row["created_time"]) for row in tape_rows(BTC)}

    async def scenario(align: float, window_ms: int) -> None:
        async with simulator(BTC, speed=1, rebase_now=True, rebase_align=align) as sim:
            async with connect(public(sim)) as ws:
                await subscribe(ws, ("trades", "BTC-USDT"))
                await recv_json(ws)
                for _ in range(3):
                    (item,) = (await recv_json(ws))["data"]
                    shift = int(item["ts"]) - tape_ts[item["tradeId"]]
                    assert shift % int(align * 1000) == 0  # the grid of candles is kept
                    assert -window_ms < int(item["ts"]) - time.time() * 1000 < 3_000

    asyncio.run(scenario(0.001, 3_000))  # no alignment: within delivery time of now
    asyncio.run(scenario(60, 63_000))  # default: a whole number of minutes, so up to a minute behind


@pytest.mark.slow
def test_business_candles_equal_the_exchange_klines() -> None:
    expected = {tf: tape_rows(DATA / "tapes" / f"XRP-ETH-exchange-candles-{tf}.csv") for tf in ("1m", "5m")}

    async def scenario() -> dict[str, list[list[str]]]:
        confirmed: dict[str, list[list[str]]] = {"candle1m": [], "candle5m": []}
        wanted = {"candle1m": len(expected["1m"]) - 1, "candle5m": len(expected["5m"]) - 1}
        async with simulator(XRP, speed=0, wait_for_subscriber=True) as sim:
            async with connect(business(sim), max_queue=None) as ws:
                await subscribe(ws, ("candle1m", "XRP-ETH"), ("candle5m", "XRP-ETH"))
                while any(len(confirmed[c]) < n for c, n in wanted.items()):
                    frame = await recv_json(ws)
                    if "data" in frame:
                        for row in frame["data"]:
                            if row[8] == "1":
                                confirmed[frame["arg"]["channel"]].append(row)
                await wait_finished(sim)
                while True:  # nothing else gets confirmed: the last bar ends after the tape (rule 9)
                    try:
                        frame = await recv_json(ws, within=0.5)
                    except TimeoutError:
                        break
                    assert all(row[8] == "0" for row in frame["data"])
        return confirmed

    confirmed = asyncio.run(scenario())
    for tf in ("1m", "5m"):
        ours = [(int(r[0]), *(Decimal(v) for v in r[1:6])) for r in confirmed[f"candle{tf}"]]
        theirs = [
            (int(r["open_time"]), *(Decimal(r[k]) for k in ("open", "high", "low", "close", "volume")))
            for r in expected[tf][:-1]
        ]  # the last kline may have been still forming (SOURCES.md)
        assert ours == theirs


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


# ----------------------------------------------------------------------------- continuing an earlier run


@pytest.mark.parametrize(
    ("now", "after", "align", "offset", "start"),
    [
        (100_000, None, 1_000, 89_000, 100_000),  # no earlier run: start now, on the grid
        (100_500, None, 1_000, 89_000, 100_000),  # up to one grid step before now
        (100_000, 50_000, 1_000, 89_000, 100_000),  # the earlier run ended before the history: unchanged
        (100_000, 95_000, 1_000, 95_000, 100_000),  # first trade at 96 000: a shorter history
        (100_000, 99_999, 1, 99_000, 100_000),  # first trade right after the stored one, no history
        (100_000, 104_000, 1_000, 104_000, 100_000),  # stored trade ahead of now: start now, wait for it
    ],
)
def test_rebase_puts_every_trade_after_the_stored_one(
    now: int, after: int | None, align: int, offset: int, start: int
) -> None:
    first_ms, start_tape_ms = 1_000, 11_000  # history: the tape's first 10 s
    plan = rebase(first_ms, start_tape_ms, now, align, after)
    assert (plan.offset_ms, plan.start_ms) == (offset, start)
    assert plan.offset_ms % align == 0 and plan.start_ms <= now
    if after is not None:
        assert first_ms + plan.offset_ms > after


def test_continue_after_needs_rebase_now_and_a_well_formed_value() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--tape", str(BTC), "--continue-after", "BTC-USDT=5@100"])
    with pytest.raises(SystemExit):
        parse_args(["--tape", str(BTC), "--rebase-now", "--continue-after", "BTC-USDT=5"])
    config = parse_args(["--tape", str(BTC), "--rebase-now", "--continue-after", "BTC-USDT=5@100"])
    assert config.continue_after == {"BTC-USDT": (5, 100)}


def test_continue_after_serves_ids_and_times_that_follow_the_stored_trade() -> None:
    """REST history and pushes continue the stored trade: the first id is the stored one + 1, every
    trade comes after the stored time, and the pushes follow the history without a hole."""
    rows = tape_rows(BTC)
    first_id = int(rows[0]["trade_id"])
    stored_id, stored_ms = 41, int(time.time() * 1000) - 10_000

    async def scenario() -> None:
        options = {"rebase_now": True, "rebase_align": 0.001, "start_offset": 60}
        async with simulator(BTC, continue_after={"BTC-USDT": (stored_id, stored_ms)}, **options) as sim:
            rest = f"{sim.urls['rest']}/api/v5/market/history-trades?instId=BTC-USDT"
            _, body = await http_get(f"{rest}&after={stored_id + 101}")
            oldest = body["data"][::-1]
            assert [int(r["tradeId"]) for r in oldest] == list(range(stored_id + 1, stored_id + 101))
            assert int(oldest[0]["ts"]) == stored_ms + 1  # the tape's first trade, just after the stored
            for row, tape in zip(oldest, rows, strict=False):  # the tape, shifted in id and time
                assert (row["px"], row["sz"]) == (tape["price"], tape["size"])
                assert int(row["tradeId"]) - int(tape["trade_id"]) == stored_id + 1 - first_id
            _, latest = await http_get(f"{sim.urls['rest']}/api/v5/market/trades?instId=BTC-USDT&limit=1")
            newest = int(latest["data"][0]["tradeId"])
            async with connect(public(sim)) as ws:
                await subscribe(ws, ("trades", "BTC-USDT"))
                await recv_json(ws)
                snapshot = (await recv_json(ws))["data"][0]
                pushed = (await recv_json(ws))["data"][0]
            assert (
                int(snapshot["tradeId"]) >= newest and int(pushed["tradeId"]) == int(snapshot["tradeId"]) + 1
            )
            assert abs(int(pushed["ts"]) - time.time() * 1000) < 3_000
            assert sim.status()["id_shifts"] == {"BTC-USDT": stored_id + 1 - first_id}

    asyncio.run(scenario())
