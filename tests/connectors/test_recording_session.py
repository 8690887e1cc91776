"""Recorded sessions, pure: a scripted live session (two instruments, holes, nested REST requests, an
unreadable frame, a reconnect) replays to the same items; a replay stops where the dataflow stopped
taking items, a resumed partition skips what it had emitted, an answer the sequencer did not ask for is
an error.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from connectors.okx.parser import parse_frame
from connectors.okx.recording import RecordedSequencer
from connectors.okx.session import SessionSource
from connectors.okx.session_format import SessionError
from market.sequencing import (
    Action,
    Backfilled,
    Disconnected,
    Event,
    FetchBackfill,
    FetchLatest,
    Heard,
    Latest,
    Push,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.types import EPOCH, Trade
from tests.connectors.recording_kit import (
    at,
    recorder,
    replayed,
    sequencer,
)

# ------------------------------------------------------------------------------- a scripted session

SYMBOLS = ("BTC-USDT", "ETH-USDT")


def market_trade(symbol: str, trade_id: int) -> Trade:
    return Trade(
        "okx", symbol, trade_id, Decimal("100.5") + trade_id, Decimal("0.25"), "buy", at(-30 + trade_id / 10)
    )


def push(seconds: float, symbol: str, *ids: int, price: str | None = None) -> Push:
    items = [
        {
            "instId": symbol,
            "tradeId": str(i),
            "px": price or str(market_trade(symbol, i).price),
            "sz": "0.25",
            "side": "buy",
            "ts": str((market_trade(symbol, i).ts_event - EPOCH) // timedelta(milliseconds=1)),
            "count": "1",
        }
        for i in ids
    ]
    raw = orjson.dumps({"arg": {"channel": "trades", "instId": symbol}, "data": items})
    parsed = parse_frame(raw, at(seconds))
    assert isinstance(parsed, list)
    return Push(tuple(parsed), raw, at(seconds))


class Exchange:
    """REST answers from the market as it stands at ``newest`` (per instrument)."""

    def __init__(self) -> None:
        self.newest = {"BTC-USDT": 10, "ETH-USDT": 5}

    def answer(self, request: FetchLatest | FetchBackfill, now: datetime) -> Event:
        if isinstance(request, FetchLatest):
            newest = self.newest[request.symbol]
            trades = tuple(
                replace(market_trade(request.symbol, i), ts_recv=now, origin="rest")
                for i in range(newest, max(0, newest - 5), -1)
            )
            return Latest(request.symbol, trades, None, now)
        inside = tuple(
            replace(market_trade(request.symbol, i), ts_recv=now, origin="rest")
            for i in range(request.after_id + 1, request.until_id)
        )
        return Backfilled(request, inside, (), None, now + timedelta(milliseconds=1))


def run_live(seq: RecordedSequencer, script: list[tuple[Event, dict[str, int]]]) -> list[Action]:
    """What the live stream does: feed each input, perform the requests breadth first (answers fed
    back in the order asked), hand the items over in order."""
    exchange, out = Exchange(), []
    for event, moves in script:
        exchange.newest.update(moves)
        work = deque(seq.feed(event))
        while work:
            action = work.popleft()
            if isinstance(action, FetchLatest | FetchBackfill):
                work.extend(seq.feed(exchange.answer(action, event_time(event) + timedelta(milliseconds=5))))
            else:
                out.append(action)
    return out


def event_time(event: Event) -> datetime:
    for name in ("now", "received"):
        if hasattr(event, name):
            value = getattr(event, name)
            assert isinstance(value, datetime)
            return value
    raise AssertionError(event)


def script() -> list[tuple[Event, dict[str, int]]]:
    return [
        (Start(at(0)), {}),
        (Subscribed("BTC-USDT", at(0.1)), {}),  # REST newest 10: the start
        (Subscribed("ETH-USDT", at(0.1)), {"ETH-USDT": 7}),  # 7 > 5 known? no position yet: start at 7
        (push(0.2, "BTC-USDT", 11, 12), {}),
        (push(0.3, "BTC-USDT", 15), {}),  # a hole: held
        (push(0.35, "ETH-USDT", 8), {}),
        (Heard(at(0.5)), {}),
        (Tick(at(0.9)), {}),  # the reorder window passed: backfill 13, 14
        (Unreadable(b"\x00not json", "malformed JSON", at(1.0)), {}),
        (push(1.1, "BTC-USDT", 16, 17), {}),
        (push(1.2, "BTC-USDT", 18, price="9" * 40), {}),  # poison: refused, no position moves
        (Tick(at(1.6)), {}),
        (push(1.7, "ETH-USDT", 9), {}),
        (Disconnected(at(2.0), "connection lost: test"), {"BTC-USDT": 25, "ETH-USDT": 12}),
        (Subscribed("BTC-USDT", at(3.0)), {}),  # catch-up: backfills asked from the answers
        (Subscribed("ETH-USDT", at(3.0)), {}),
        (push(3.1, "BTC-USDT", 26), {}),
        (push(3.2, "ETH-USDT", 13), {}),
        (Heard(at(3.5)), {}),
        (Tick(at(4.0)), {}),
        (Disconnected(at(5.0), "stopped"), {}),
    ]


def test_a_scripted_session_replays_to_the_same_items(tmp_path: Path) -> None:
    rec = recorder(tmp_path, flush_seconds=0.0, rotate_bytes=800)
    live = run_live(sequencer(rec), script())
    rec.close()
    kinds = {type(item).__name__ for item in live}
    assert kinds == {"Trade", "Gap", "FeedState", "Rejected"}, kinds
    assert sum(isinstance(i, Trade) and i.origin == "rest" for i in live) >= 10
    directory = tmp_path / "sessions" / "s1"
    assert len(list(directory.iterdir())) > 1
    assert replayed([directory]) == live


def test_a_replay_stops_where_the_live_dataflow_stopped_taking_items(tmp_path: Path) -> None:
    rec = recorder(tmp_path, flush_seconds=0.0, rotate_bytes=800)
    live = run_live(sequencer(rec), script())
    rec.end(17)
    rec.record(Tick(at(9)))  # the stream goes on until it is cancelled: still recorded, not replayed
    rec.close()
    assert replayed([tmp_path / "sessions" / "s1"]) == live[:17]


def test_a_resumed_partition_skips_what_it_had_emitted(tmp_path: Path) -> None:
    rec = recorder(tmp_path, flush_seconds=0.0)
    live = run_live(sequencer(rec), script())
    rec.close()
    source = SessionSource([tmp_path / "sessions" / "s1"], batch_size=5)
    (key,) = source.list_parts()
    first = source.build_part("session", key, None)
    head = first.next_batch() + first.next_batch()
    resumed = source.build_part("session", key, first.snapshot())
    rest: list[Action] = []
    with pytest.raises(StopIteration):
        while True:
            rest.extend(resumed.next_batch())
    assert head + rest == live


def test_an_answer_to_a_request_never_made_is_an_error(tmp_path: Path) -> None:
    rec = recorder(tmp_path, flush_seconds=0.0)
    seq = sequencer(rec)
    run_live(seq, script()[:3])
    seq.feed(Latest("BTC-USDT", (), None, at(0.4)))  # nothing asked for it
    rec.close()
    with pytest.raises(SessionError, match=r"jsonl.gz:\d+: the recording answers FetchLatest"):
        replayed([tmp_path / "sessions" / "s1"])
