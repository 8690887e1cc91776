"""The Binance pieces with the exchange-neutral sequencer (``market.sequencing``), no flow: aggregate
trades parsed from documented ``@aggTrade`` frames start after the newest trade REST reports, a hole
in the aggregate ids is backfilled from the Binance simulator's REST, and every id leaves once, in
order, with the gap recorded as filled. Times are data: each frame is received 100 ms after its trade."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

from connectors.binance.parser import FrameParser
from connectors.binance.rest import BinanceRestClient
from connectors.binance.simulator import BinanceSimulator, BinanceSimulatorConfig
from market.sequencing import (
    Action,
    Backfilled,
    Event,
    FetchBackfill,
    FetchLatest,
    Gap,
    Latest,
    Push,
    Sequencer,
    Start,
    Subscribed,
    Tick,
)
from market.types import Trade, utc_from_ms
from tests.support.tapes import tape_rows

XRP = Path(__file__).parents[1] / "data" / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
ROWS = {int(r["trade_id"]): r for r in tape_rows(XRP)}
FIRST = min(ROWS)
DELAY = timedelta(milliseconds=100)


def frame(trade_id: int) -> bytes:
    row = ROWS[trade_id]
    ms = int(row["created_time"])
    data = {"e": "aggTrade", "E": ms, "s": "XRPETH", "a": trade_id, "p": row["price"], "q": row["size"],
            "f": trade_id, "l": trade_id, "T": ms, "m": row["side"] == "sell", "M": True}  # fmt: skip
    return json.dumps({"stream": "xrpeth@aggTrade", "data": data}).encode()


def received(trade_id: int) -> datetime:
    return utc_from_ms(int(ROWS[trade_id]["created_time"])) + DELAY


async def drive(sequencer: Sequencer, client: BinanceRestClient, event: Event, out: list[Action]) -> None:
    """Feed ``event``; perform the REST requests it asks for and feed their answers, as a connection does."""
    work = list(sequencer.feed(event))
    while work:
        action = work.pop(0)
        if isinstance(action, FetchLatest):
            (newest,) = await client.agg_trades(action.symbol, FIRST + 100, 1)  # the newest at subscription
            at = utc_from_ms(int(ROWS[FIRST + 100]["created_time"])) + DELAY
            work.extend(sequencer.feed(Latest(action.symbol, (newest,), None, at)))
        elif isinstance(action, FetchBackfill):
            result = await client.backfill(action.symbol, action.after_id, action.until_id)
            at = received(action.until_id) + DELAY
            answer = Backfilled(action, tuple(result.trades), tuple(result.outside), result.error, at)
            work.extend(sequencer.feed(answer))
        else:
            out.append(action)


def test_a_hole_in_aggregate_ids_is_backfilled_and_every_id_leaves_once() -> None:
    async def scenario() -> list[Action]:
        sim = BinanceSimulator(BinanceSimulatorConfig(tapes=(XRP,), speed=0))
        await sim.start()
        try:
            await sim.finished.wait()
            client = BinanceRestClient(sim.urls["rest"], min_interval=0)
            parse = FrameParser(["XRP-ETH"])
            sequencer = Sequencer(
                "binance", ["XRP-ETH"], push_source="binance-ws", rest_source="binance-rest"
            )
            out: list[Action] = []
            start = received(FIRST + 100)
            await drive(sequencer, client, Start(start), out)
            await drive(sequencer, client, Subscribed("XRP-ETH", start), out)
            for trade_id in [*range(FIRST + 101, FIRST + 111), FIRST + 2000, FIRST + 2001]:
                trades = parse(frame(trade_id), received(trade_id))
                assert isinstance(trades, list)
                await drive(sequencer, client, Push(tuple(trades), frame(trade_id), received(trade_id)), out)
            await drive(sequencer, client, Tick(received(FIRST + 2001) + timedelta(seconds=1)), out)
            return out
        finally:
            await sim.stop()

    out = asyncio.run(scenario())
    trades = [a for a in out if isinstance(a, Trade)]
    assert [t.trade_id for t in trades] == list(range(FIRST + 101, FIRST + 2002))
    assert {t.origin for t in trades if FIRST + 110 < t.trade_id < FIRST + 2000} == {"rest"}
    assert {t.origin for t in trades if not FIRST + 110 < t.trade_id < FIRST + 2000} == {"ws"}
    assert all(t.exchange == "binance" and t.symbol == "XRP-ETH" for t in trades)
    (gap,) = [a for a in out if isinstance(a, Gap)]
    assert (gap.from_trade_id, gap.to_trade_id, gap.filled, gap.trades_backfilled) == (
        FIRST + 110,
        FIRST + 2000,
        True,
        1889,
    )
    assert gap.reason == "sequence" and gap.exchange == "binance"
