"""The Binance simulator as a client nobody here wrote sees it: ccxt's ``binance`` (REST) and
``ccxt.pro``'s (websockets), pointed at the simulator instead of api.binance.com and
stream.binance.com, read the tape's trades with the right ids, prices, amounts, sides and times."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.binance.simulator import BinanceSimulator, BinanceSimulatorConfig
from tests.conftest import REPO_ROOT, TEST_DATA
from tests.support.tapes import tape_rows

ccxt = pytest.importorskip("ccxt")

XRP = TEST_DATA / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
ROWS = {int(r["trade_id"]): r for r in tape_rows(XRP)}
OPTIONS = {"options": {"fetchMarkets": {"types": ["spot"]}}}  # spot only: no futures exchangeInfo


def assert_is_tape_row(trade: dict[str, Any]) -> None:
    row = ROWS[int(trade["id"])]
    assert trade["symbol"] == "XRP/ETH"
    assert (trade["price"], trade["amount"]) == (float(row["price"]), float(row["size"]))
    assert (trade["side"], trade["timestamp"]) == (row["side"], int(row["created_time"]))


@pytest.fixture(scope="module")
def simulator_rest() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.binance.simulator", "--tape", str(XRP), "--speed", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        rest = json.loads(process.stdout.readline())["rest"]
        deadline = time.monotonic() + 30
        while not json.loads(urllib.request.urlopen(f"{rest}/sim/v1/status").read())["finished"]:
            assert time.monotonic() < deadline, "the replay did not finish"
            time.sleep(0.1)  # speed 0: every trade is played within a second or so
        yield rest
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


def test_ccxt_fetch_trades_newest_and_from_an_id(simulator_rest: str) -> None:
    exchange = ccxt.binance(OPTIONS)
    exchange.urls["api"]["public"] = f"{simulator_rest}/api/v3"
    last = max(ROWS)
    newest = exchange.fetch_trades("XRP/ETH", limit=5)
    assert [int(t["id"]) for t in newest] == list(range(last - 4, last + 1))
    first = min(ROWS)
    paged = exchange.fetch_trades("XRP/ETH", limit=1000, params={"fromId": first + 10})
    assert [int(t["id"]) for t in paged] == list(range(first + 10, first + 1010))
    for trade in newest + paged:
        assert_is_tape_row(trade)
    assert exchange.markets["XRP/ETH"]["id"] == "XRPETH"


def test_ccxt_pro_watch_trades_on_the_aggtrade_stream() -> None:
    pro = pytest.importorskip("ccxt.pro")

    async def scenario() -> list[dict[str, Any]]:
        sim = BinanceSimulator(BinanceSimulatorConfig(tapes=(XRP,), speed=0, wait_for_subscriber=True))
        await sim.start()
        exchange = pro.binance(OPTIONS)
        exchange.urls["api"]["public"] = f"{sim.urls['rest']}/api/v3"
        exchange.urls["api"]["ws"]["spot"] = f"{sim.urls['ws']}/ws"
        got: list[dict[str, Any]] = []
        try:
            while len(got) < 200:
                got.extend(
                    await asyncio.wait_for(exchange.watch_trades("XRP/ETH", params={"name": "aggTrade"}), 10)
                )
        finally:
            await exchange.close()
            await sim.stop()
        return got

    got = asyncio.run(scenario())
    ids = [int(t["id"]) for t in got]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive aggregate ids, none lost or repeated
    for trade in got:
        assert_is_tape_row(trade)


@pytest.mark.parametrize(("timeframe", "name"), [("1m", "1m"), ("5m", "5m")])
def test_ccxt_fetch_ohlcv_gives_binances_own_klines(simulator_rest: str, timeframe: str, name: str) -> None:
    """The simulator's klines, built from the played tape, are Binance's (the last one was still forming)."""
    exchange = ccxt.binance(OPTIONS)
    exchange.urls["api"]["public"] = f"{simulator_rest}/api/v3"
    expected = [
        [int(k["open_time"]), *(float(k[f]) for f in ("open", "high", "low", "close", "volume"))]
        for k in tape_rows(TEST_DATA / "tapes" / f"XRP-ETH-exchange-candles-{name}.csv")
    ]
    got: list[list[float]] = []
    while len(got) < len(expected):
        page = exchange.fetch_ohlcv("XRP/ETH", timeframe, since=expected[len(got)][0], limit=1000)
        assert page
        got.extend(page)
    assert got[:-1] == expected[:-1]
