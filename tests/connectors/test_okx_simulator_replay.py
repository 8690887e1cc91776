"""The OKX simulator's replay: the tape played exactly, in order, aggregated like OKX, paged back over REST,
rebased to now, and its business candles equal to the exchange's klines (tests/data/SOURCES.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from connectors.okx.simulator.replay import Hub, Market, Replay
from tests.connectors.simulator_kit import (
    BTC,
    DATA,
    SAMPLES,
    XRP,
    business,
    cli_simulator,
    http_get,
    no_frame_within,
    public,
    recv_json,
    simulator,
    subscribe,
    wait_finished,
)
from tests.support.tapes import tape_rows

# ----------------------------------------------------------------------------- the replay


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


def test_a_rebased_replay_keeps_the_time_read_by_the_rebase_however_long_the_set_up() -> None:
    async def scenario() -> tuple[float, float]:
        async with simulator(BTC, speed=1, rebase_now=True, rebase_align=0.001) as sim:
            time.sleep(0.6)  # noqa: ASYNC251 (a slow set-up blocking the loop after the rebase read the time)
            await asyncio.sleep(0)  # the replay task starts
            return sim.replay.now_ms(), time.time() * 1000

    replay_ms, wall_ms = asyncio.run(scenario())
    assert abs(replay_ms - wall_ms) < 300  # pushes are stamped with the time they are sent, not 0.6 s before


def test_a_replay_clock_anchored_in_the_past_counts_from_the_anchor() -> None:
    async def scenario() -> tuple[int, int]:
        market = Market(["BTC-USDT"], Hub())
        anchored = Replay(
            market, iter([]), speed=2, start_ms=1_000, anchor=asyncio.get_running_loop().time() - 60
        )
        unanchored = Replay(market, iter([]), speed=2, start_ms=1_000)
        await unanchored.run()
        return anchored.now_ms(), unanchored.now_ms()

    anchored, unanchored = asyncio.run(scenario())
    assert anchored >= 1_000 + 2 * 60_000  # twice real time since the anchor, a minute ago
    assert unanchored < 1_000 + 60_000  # from when it ran


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
