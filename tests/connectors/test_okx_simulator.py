"""The OKX simulator over real loopback websockets and HTTP, in-process and as ``python -m``: message
shapes, requests and continuing an earlier run (the replay and the faults: test_okx_simulator_replay.py,
test_okx_simulator_faults.py).

Oracles are independent of the simulator: real OKX messages (tests/data/okx-samples), the tapes read with
the csv module, and the exchange's own klines for the XRP-ETH tape (tests/data/SOURCES.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from connectors.okx.simulator import parse_args
from connectors.okx.simulator.continuation import rebase
from tests.connectors.simulator_kit import (
    BTC,
    DATA,
    MATIC,
    business,
    http_get,
    no_frame_within,
    public,
    recv_json,
    sample_item_keys,
    sample_key_orders,
    simulator,
    subscribe,
    wait_finished,
)
from tests.support.tapes import tape_rows

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
