"""Helpers of the recorded-session tests: real OKX frames and REST trades as inputs, a recorder and a
recorded sequencer, and the items a session replays to.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from connectors.okx.parser import parse_rest_trades
from connectors.okx.recording import RecordedSequencer, SessionRecorder, SessionRecording
from connectors.okx.session import SessionSource
from market.sequencing import (
    Action,
    Limits,
)
from market.types import EPOCH, Trade

REPO = Path(__file__).parents[2]
SAMPLES = REPO / "tests" / "data" / "okx-samples"
BTC_TAPE = REPO / "tests" / "data" / "tapes" / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
T0 = datetime(2025, 1, 1, 12, tzinfo=EPOCH.tzinfo)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample_frames() -> list[bytes]:
    """Trades pushes captured from OKX (tests/data/okx-samples/trades.jsonl, sources in each line)."""
    lines = (SAMPLES / "trades.jsonl").read_text().splitlines()
    return [orjson.dumps(json.loads(line)["msg"]) for line in lines if line.strip()][-12:]


def sample_rest_trades(received: datetime) -> list[Trade]:
    """``GET /api/v5/market/trades`` bodies captured from OKX (rest-market-trades.jsonl)."""
    trades: list[Trade] = []
    for line in (SAMPLES / "rest-market-trades.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "body" in record:
            trades += [
                replace(t, origin="rest") for t in parse_rest_trades(json.dumps(record["body"]), received)
            ]
    return trades


def recorder(tmp_path: Path, **options: object) -> SessionRecorder:
    recording = SessionRecording(tmp_path / "sessions", session="s1", **options)  # type: ignore[arg-type]
    return SessionRecorder(recording, "BTC-USDT,ETH-USDT")


def sequencer(rec: SessionRecorder) -> RecordedSequencer:
    return RecordedSequencer(
        rec, "okx", ["BTC-USDT", "ETH-USDT"], Limits(), push_source="okx-ws", rest_source="okx-rest"
    )


def replayed(paths: list[Path]) -> list[Action]:
    """Every item the session source emits, pulled as Bytewax would."""
    source = SessionSource(paths, batch_size=7)
    items: list[Action] = []
    for key in source.list_parts():
        part = source.build_part("session", key, None)
        while True:
            try:
                items.extend(part.next_batch())
            except StopIteration:
                break
    return items
