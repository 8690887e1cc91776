"""The simulator's REST API as OKX's own Python SDK (``python-okx``) sees it: the SDK's MarketAPI, pointed
at the simulator instead of www.okx.com, reads recent trades and walks history-trades by trade id.

(The SDK's websocket client insists on TLS, so it cannot open the simulator's plain ``ws://`` loopback
socket; the websocket side is checked against the real OKX captures in test_okx_simulator.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import REPO_ROOT, TEST_DATA
from tests.support.tapes import tape_rows

BTC = TEST_DATA / "tapes" / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"


@pytest.fixture(scope="module")
def simulator_rest() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.okx.simulator", "--tape", str(BTC), "--speed", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["rest"]
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


def test_the_official_sdk_reads_trades_and_pages_history(simulator_rest: str) -> None:
    from okx import MarketData

    tape = tape_rows(BTC)
    api = MarketData.MarketAPI(flag="0", domain=simulator_rest, debug=False)
    deadline = time.monotonic() + 30
    while True:  # speed 0: the replay finishes quickly; wait until every trade has been played
        latest = api.get_trades(instId="BTC-USDT", limit="5")
        played_all = bool(latest["data"]) and latest["data"][0]["tradeId"] == tape[-1]["trade_id"]
        if played_all or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert latest["code"] == "0"
    assert [d["tradeId"] for d in latest["data"]] == [r["trade_id"] for r in reversed(tape[-5:])]
    first = latest["data"][0]
    assert (first["px"], first["sz"], first["side"], first["ts"]) == (
        tape[-1]["price"],
        tape[-1]["size"],
        tape[-1]["side"],
        tape[-1]["created_time"],
    )

    # Page back through history-trades with the SDK's `after` cursor, as a backfill would.
    seen: list[str] = []
    after = tape[-1]["trade_id"]
    for _ in range(3):
        page = api.get_history_trades(instId="BTC-USDT", type="1", after=after, limit="100")
        assert page["code"] == "0" and len(page["data"]) == 100
        seen += [d["tradeId"] for d in page["data"]]
        after = page["data"][-1]["tradeId"]
    assert seen == [r["trade_id"] for r in reversed(tape[-301:-1])]

    bad = api.get_trades(instId="NO-SUCH", limit="5")
    assert bad["code"] != "0" and bad["data"] == []
