"""The Binance simulator over real websockets and HTTP on loopback, and the Binance REST client against
it: combined and raw streams, SUBSCRIBE answers, Binance's per-connection rules (5 messages a second,
the connection age limit, server pings), aggTrades paging, exchangeInfo, and 429 with Retry-After."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from connectors.binance.parser import BinanceRestError, FrameParser
from connectors.binance.rest import BinanceRestClient, RateLimited
from connectors.binance.simulator import BinanceSimulator, BinanceSimulatorConfig
from market.types import Trade, ms_from_utc
from tests.support.tapes import tape_rows

XRP = Path(__file__).parents[1] / "data" / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
ROWS = tape_rows(XRP)
FIRST = int(ROWS[0]["trade_id"])


@asynccontextmanager
async def simulator(**options: Any) -> AsyncIterator[BinanceSimulator]:
    sim = BinanceSimulator(BinanceSimulatorConfig(tapes=(XRP,), **{"speed": 0, **options}))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def row_fields(row: dict[str, str]) -> tuple[int, str, str, str, int]:
    return (int(row["trade_id"]), row["price"], row["size"], row["side"], int(row["created_time"]))


def test_a_combined_stream_named_in_the_url_carries_every_trade() -> None:
    async def scenario() -> None:
        async with simulator(wait_for_subscriber=True) as sim:
            parse = FrameParser(["XRP-ETH"])
            got: list[Trade] = []
            async with connect(f"{sim.urls['ws']}/stream?streams=xrpeth@aggTrade") as ws:
                while len(got) < len(ROWS):
                    raw = await asyncio.wait_for(ws.recv(), 10)
                    assert json.loads(raw)["stream"] == "xrpeth@aggTrade"
                    result = parse(raw, datetime.now(UTC))
                    assert isinstance(result, list)
                    got.extend(result)
            fields = [(t.trade_id, str(t.price), str(t.size), t.side, ms_from_utc(t.ts_event)) for t in got]
            assert fields == [row_fields(r) for r in ROWS]

    asyncio.run(scenario())


def test_subscribe_requests_on_a_raw_stream() -> None:
    async def scenario() -> None:
        slow = {"wait_for_subscriber": True, "speed": 1e-6}  # the first trade at once, the next in days
        async with simulator(**slow) as sim, connect(f"{sim.urls['ws']}/ws") as ws:
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
            assert json.loads(await ws.recv()) == {"result": [], "id": 1}
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["xrpeth@aggTrade"], "id": 2}))
            answer, event = json.loads(await ws.recv()), json.loads(await ws.recv())
            assert answer == {"result": None, "id": 2}
            assert set(event) == set("eEsapqflTmM") and event["e"] == "aggTrade" and event["a"] == FIRST
            assert (event["p"], event["q"], event["m"]) == (ROWS[0]["price"], ROWS[0]["size"], True)
            await ws.send(json.dumps({"method": "PING", "id": 3}))
            while "id" not in (reply := json.loads(await ws.recv())):
                pass
            assert reply["id"] == 3 and reply["error"]["code"] == 2

    asyncio.run(scenario())


def test_more_than_five_messages_a_second_closes_the_connection() -> None:
    async def scenario() -> None:
        async with simulator() as sim, connect(f"{sim.urls['ws']}/ws") as ws:
            for n in range(6):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": n}))
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1008 and ws.close_reason == "Too many requests"

    asyncio.run(scenario())


def test_connections_end_at_the_age_limit_and_answering_pings_keeps_them_until_then() -> None:
    async def scenario() -> None:
        async with simulator(max_age=1.0, ping_interval=0.1, pong_timeout=0.3) as sim:
            async with connect(f"{sim.urls['ws']}/ws", ping_interval=None) as ws:
                started = asyncio.get_running_loop().time()
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                lived = asyncio.get_running_loop().time() - started
                assert ws.close_code == 1001 and lived >= 0.9  # pongs answered the pings for 1 s

    asyncio.run(scenario())


def test_rest_client_backfills_by_aggregate_id_in_pages() -> None:
    async def scenario() -> None:
        async with simulator() as sim:
            await sim.finished.wait()
            client = BinanceRestClient(sim.urls["rest"], min_interval=0)
            result = await client.backfill("XRP-ETH", FIRST, FIRST + 2501)
            assert result.complete and result.error is None and result.requests == 3
            assert [t.trade_id for t in result.trades] == list(range(FIRST + 1, FIRST + 2501))
            assert all(t.origin == "rest" and t.exchange == "binance" for t in result.trades)
            assert result.outside == []  # the last page asks for the 500 ids left, not past the hole
            latest = await client.latest_trades("XRP-ETH", 5)
            assert [row_fields(r)[0] for r in ROWS[-5:]] == [t.trade_id for t in latest]
            assert (await client.symbols()).by_symbol == {"XRPETH": "XRP-ETH"}
            assert client.used_weight == 3 * 4 + 4 + 20
            with pytest.raises(BinanceRestError, match="-1121"):
                await client.latest_trades("XRP-BTC")

    asyncio.run(scenario())


def test_rest_client_waits_out_429_and_gives_up_on_long_bans() -> None:
    async def scenario() -> None:
        async with simulator(throttle_every=2, retry_after=0) as sim:
            await sim.finished.wait()
            client = BinanceRestClient(sim.urls["rest"], min_interval=0)
            result = await client.backfill("XRP-ETH", FIRST, FIRST + 2501)
            assert result.complete and sim.rest_state.throttled >= 1 and result.requests > 3
        async with simulator(throttle_every=1, retry_after=120) as sim:
            await sim.finished.wait()
            client = BinanceRestClient(sim.urls["rest"], min_interval=0, max_retry_after=60)
            with pytest.raises(RateLimited, match="retry after 120 s"):
                await client.latest_trades("XRP-ETH")
            result = await client.backfill("XRP-ETH", FIRST, FIRST + 10)
            assert not result.complete and result.error is not None and "RateLimited" in result.error

    asyncio.run(scenario())


def test_rebased_replay_publishes_now_on_the_minute_grid() -> None:
    async def scenario() -> None:
        async with simulator(rebase_now=True, speed=1.0) as sim:
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            assert sim.market.offset_ms % 60_000 == 0
            first = int(ROWS[0]["created_time"]) + sim.market.offset_ms
            assert now_ms - 60_000 < first <= now_ms
            client = BinanceRestClient(sim.urls["rest"], min_interval=0)
            (trade,) = await client.agg_trades("XRP-ETH", FIRST, 1)
            assert (trade.trade_id, ms_from_utc(trade.ts_event)) == (FIRST, first)

    asyncio.run(scenario())


def test_a_client_too_far_behind_is_dropped() -> None:
    async def scenario() -> None:
        async with simulator(wait_for_subscriber=True, max_queue=10) as sim:
            async with connect(f"{sim.urls['ws']}/stream?streams=xrpeth@aggTrade") as ws:
                received = 0
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                        received += 1
                assert ws.close_code == 1008 and ws.close_reason == "slow consumer"
                assert 0 < received < len(ROWS)

    asyncio.run(scenario())
