"""The OKX REST client's records say which instrument they are about (``exchange``, ``symbol``), so a JSON
log line carries them (configs/logs.py). Oracle: the instrument the test asked for."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest

from configs.logs import JsonFormatter
from connectors.okx.rest import OkxRestClient


def test_retries_and_a_backfill_summary_name_their_instrument(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connections are refused
    caplog.set_level(logging.INFO, logger="connectors.okx.rest")

    async def scenario() -> None:
        rest = OkxRestClient(f"http://127.0.0.1:{port}", retries=1, retry_backoff=0.01, min_interval=0.0)
        with pytest.raises(OSError):
            await rest.history_trades("ETH-USDT")
        await rest.backfill("SOL-USDT", 1, 10)

    asyncio.run(scenario())
    records = [r for r in caplog.records if r.name == "connectors.okx.rest"]
    assert ["retry" in r.getMessage() for r in records] == [True, True, False]
    assert "backfill done" in records[-1].getMessage()
    lines = [json.loads(JsonFormatter("flow").format(r)) for r in records]
    assert [(line["exchange"], line["symbol"]) for line in lines] == [
        ("okx", "ETH-USDT"),
        ("okx", "SOL-USDT"),
        ("okx", "SOL-USDT"),
    ]
