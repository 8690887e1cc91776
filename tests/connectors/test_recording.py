"""Recorded sessions: the recorder writes what a live sequencer was given, and the session source
rebuilds from it the very items the live source emitted.

- pure: every input kind reads back as recorded; a scripted live session (two instruments, holes,
  nested REST requests, an unreadable frame, a reconnect) replays to the same items; rotation, pruning,
  a file cut short, an unknown version, files of two sessions, an answer the sequencer did not ask for;
- real: the live source against the OKX simulator with drops, reorders, duplicates, malformed frames,
  poison and poisoned REST answers, recorded and replayed through Bytewax: the same items, in order.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.okx.events import ConnectionHealth, Gap
from connectors.okx.parser import parse_frame, parse_rest_trades
from connectors.okx.recording import RecordedSequencer, SessionRecorder, SessionRecording
from connectors.okx.session import SessionSource, read_session
from connectors.okx.session_format import SessionError, SessionLines, decode_event, encode_event
from connectors.okx.source import OkxItem, OkxTradesSource
from market.sequencing import (
    Action,
    Backfilled,
    Disconnected,
    Event,
    FetchBackfill,
    FetchLatest,
    Heard,
    Latest,
    Limits,
    Push,
    Refused,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.types import EPOCH, Rejected, Trade
from tests.connectors.source_kit import FAST

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


# ------------------------------------------------------------------------------------------ inputs


def every_input() -> list[Event]:
    frames = sample_frames()
    rest = sample_rest_trades(at(3))
    later = [replace(t, ts_recv=at(3.5)) for t in rest[:2]]
    request = FetchBackfill("BTC-USDT", 242720700, 242720721)
    return [
        Start(at(0)),
        Subscribed("BTC-USDT", at(0.1)),
        Refused("ETH-USDT", at(0.2), "60018 Doesn't exist"),
        *[
            Push(tuple(parse_frame(raw, at(1 + i / 100))), raw, at(1 + i / 100))
            for i, raw in enumerate(frames)
        ],
        Heard(at(2)),
        Unreadable(b'{"arg": \xff broken', "malformed JSON", at(2.1)),
        Unreadable(b"x" * 10_000, "frame of 10000 bytes is over the 4096 byte limit", at(2.2)),
        Unreadable(b"", "frame over 4 MiB: the connection was closed with 1009", at(2.3)),
        Latest("BTC-USDT", tuple(rest), None, at(3.1)),
        Latest("ETH-USDT", (), "OkxRestError: 50011 Too Many Requests", at(3.2)),
        Backfilled(request, tuple(rest + later), tuple(rest[:1]), "stopped after 50 pages", at(3.6)),
        Tick(at(4)),
        Disconnected(at(5), "connection lost: closed by the server: 1006"),
    ]


def test_every_input_reads_back_as_it_was_recorded() -> None:
    limit = Limits().raw_limit
    for event in every_input():
        line = orjson.loads(orjson.dumps(encode_event(event, limit)))
        back = decode_event(line)
        if isinstance(event, Unreadable):  # kept as a reject keeps it: the first bytes and the size
            assert isinstance(back, Unreadable)
            assert (back.raw[:limit], len(back.raw), back.reason, back.received) == (
                event.raw[:limit],
                len(event.raw),
                event.reason,
                event.received,
            )
        else:
            assert back == event, type(event).__name__
    assert any(isinstance(e, Push) and e.trades and e.trades[0].seq_id for e in every_input())


def test_a_recording_reads_back_whole_and_a_killed_one_up_to_its_last_line(tmp_path: Path) -> None:
    rec = recorder(tmp_path, flush_seconds=3600.0)
    seq = sequencer(rec)
    events = every_input()
    for event in events:
        rec.record(event)
    # Disconnected flushed everything; nothing closed the file (as after SIGKILL): no gzip trailer.
    (path,) = (tmp_path / "sessions" / "s1").iterdir()
    assert path.name == "BTC-USDT+ETH-USDT.00000.jsonl.gz"
    lines = SessionLines(path)
    assert [n for n, _ in lines] == list(range(1, len(events) + 2))
    assert lines.ended_early == f"cut short after line {len(events) + 1}"
    (part,) = read_session([path])
    assert part.header.instruments == ("BTC-USDT", "ETH-USDT") and part.taken is None
    assert part.header.sequencer().limits == seq.limits
    assert [e for _, e in part.events()][:3] == events[:3]
    rec.close()  # (only so the test leaves no open file)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.9, 0.999])
def test_a_file_cut_anywhere_reads_up_to_its_last_complete_line(tmp_path: Path, keep: float) -> None:
    rec = recorder(tmp_path, flush_seconds=0.0)
    sequencer(rec)
    for event in every_input():
        rec.record(event)
    rec.close()
    (path,) = (tmp_path / "sessions" / "s1").iterdir()
    whole = [line for _, line in SessionLines(path)]
    data = path.read_bytes()
    cut = tmp_path / "cut" / "s1" / path.name
    cut.parent.mkdir(parents=True)
    cut.write_bytes(data[: int(len(data) * keep)])
    lines = SessionLines(cut)
    got = [line for _, line in lines]
    assert got == whole[: len(got)]
    assert lines.ended_early is not None
    if keep >= 0.6:
        assert len(got) > 1
        (part,) = read_session([cut])
        assert len(list(part.events())) == len(got) - 1  # what the cut file holds is replayed
    elif not got:
        with pytest.raises(SessionError, match="no session file with a header"):
            read_session([cut])


def test_files_rotate_and_replay_in_order_and_a_cut_inside_the_sequence_is_an_error(tmp_path: Path) -> None:
    rec = recorder(tmp_path, flush_seconds=0.0, rotate_bytes=1500)
    sequencer(rec)
    events = every_input() * 4
    for event in events:
        rec.record(event)
    rec.end(0)
    rec.close()
    files = sorted((tmp_path / "sessions" / "s1").iterdir())
    assert len(files) >= 4
    for number, path in enumerate(files):
        assert path.name == f"BTC-USDT+ETH-USDT.{number:05d}.jsonl.gz"
        with gzip.open(path) as handle:  # every file is a whole gzip file with its own header
            assert json.loads(handle.readline())["file"] == number
    (part,) = read_session(files[::-1])
    assert part.files == tuple(files) and part.taken == 0
    assert len(list(part.events())) == len(events)
    files[1].write_bytes(files[1].read_bytes()[:-40])
    with pytest.raises(SessionError, match="yet later files of the partition follow"):
        list(read_session(files)[0].events())


def test_the_oldest_files_beyond_keep_files_are_deleted(tmp_path: Path) -> None:
    rec = recorder(tmp_path, flush_seconds=0.0, rotate_bytes=1500, keep_files=3)
    sequencer(rec)
    for event in every_input() * 4:
        rec.record(event)
    rec.close()
    files = sorted((tmp_path / "sessions" / "s1").iterdir())
    assert [f.name[-14:] for f in files][-1] != "00000.jsonl.gz" and len(files) == 3
    with pytest.raises(SessionError, match=r"files numbered \[\d+, \d+, \d+\], not 0..2"):
        read_session([tmp_path / "sessions" / "s1"])


def test_an_unknown_version_or_another_format_is_refused_naming_the_file(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    sequencer(rec)
    rec.close()
    (path,) = (tmp_path / "sessions" / "s1").iterdir()
    with gzip.open(path) as handle:
        header = json.loads(handle.readline())
    future = tmp_path / "future.jsonl.gz"
    future.write_bytes(gzip.compress(json.dumps({**header, "version": 2}).encode() + b"\n"))
    with pytest.raises(
        SessionError,
        match=r"future.jsonl.gz: session format version 2 is not supported "
        r"\(this build reads version 1\)",
    ):
        SessionSource([future])
    other = tmp_path / "other.jsonl.gz"
    other.write_bytes(gzip.compress(b'{"time": 1}\n'))
    with pytest.raises(SessionError, match="other.jsonl.gz: not a session file"):
        SessionSource([other])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SessionError, match="no session files"):
        SessionSource([tmp_path / "empty"])
    second = tmp_path / "second.jsonl.gz"
    second.write_bytes(gzip.compress(json.dumps({**header, "session": "s2"}).encode() + b"\n"))
    with pytest.raises(SessionError, match="belong to 2 sessions"):
        SessionSource([path, second])


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


# ------------------------------------------------------------------------------------ the real source


@contextmanager
def simulator(tmp_path: Path, *args: str) -> Iterator[tuple[str, str]]:
    command = [
        sys.executable,
        "-m",
        "connectors.okx.simulator",
        "--tape",
        str(BTC_TAPE),
        "--port",
        "0",
        *args,
    ]
    with (
        (tmp_path / "simulator.log").open("w") as log,
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True) as proc,
    ):
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            yield ready["ws_public"], ready["rest"]
        finally:
            proc.terminate()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


def tape_ids() -> list[int]:
    lines = BTC_TAPE.read_text().splitlines()
    column = lines[0].split(",").index("trade_id")
    return [int(line.split(",")[column]) for line in lines[1:]]


def test_the_live_source_against_a_hostile_simulator_replays_item_for_item(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = tape_ids()
    first, last = ids[0], ids[5000]
    faults = [
        "--drop-every-seconds",
        "1",
        "--reorder-every",
        "7",
        "--duplicate-every",
        "11",
        "--malformed-every",
        "97",
        "--poison-every",
        "89",
        "--poison",
        "huge-price",
        "--poison",
        "foreign",
        "--rest-poison",
        "id",
    ]
    recording = SessionRecording(tmp_path / "sessions", rotate_bytes=32 * 1024, flush_seconds=0.2)
    with simulator(tmp_path, "--rebase-now", "--speed", "60", *faults) as (ws, rest):
        source = OkxTradesSource(
            ws,
            rest,
            ["BTC-USDT"],
            start_after={"BTC-USDT": first - 1},
            end_trade_ids={"BTC-USDT": last},
            recording=recording,
            **FAST,
        )
        flow = Dataflow("okx_recorded")
        out: list[OkxItem] = []
        op.output("out", op.input("okx", flow, source), TestingSink(out))
        run_main(flow)
    live = [item for item in out if not isinstance(item, ConnectionHealth)]
    assert [t.trade_id for t in live if isinstance(t, Trade)][-1] == last
    assert {type(item).__name__ for item in live} == {"Trade", "Gap", "FeedState", "Rejected"}
    assert {g.reason for g in live if isinstance(g, Gap)} >= {"reconnect"}
    assert {r.source for r in live if isinstance(r, Rejected)} == {"okx-ws", "okx-rest"}
    directory = tmp_path / "sessions" / recording.session
    assert len(list(directory.iterdir())) >= 2  # rotated

    flow = Dataflow("okx_replayed")
    again: list[object] = []
    op.output("out", op.input("session", flow, SessionSource([directory])), TestingSink(again))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_main(flow)
    assert again == live
    assert not caplog.records  # the recording was closed: read whole


def test_a_stopped_source_records_how_many_items_the_dataflow_took(tmp_path: Path) -> None:
    recording = SessionRecording(tmp_path / "sessions", flush_seconds=0.2)
    stop = threading.Event()
    with simulator(tmp_path, "--rebase-now", "--speed", "20", "--drop-every-seconds", "1") as (ws, rest):
        source = OkxTradesSource(
            ws,
            rest,
            ["BTC-USDT"],
            start_after={"BTC-USDT": tape_ids()[0] - 1},
            recording=recording,
            stop=stop,
            **FAST,
        )
        (key,) = source.list_parts()
        part = source.build_part("okx", key, None)
        taken: list[object] = []
        deadline = time.monotonic() + 4
        try:
            while True:
                if time.monotonic() > deadline:
                    stop.set()
                taken.extend(part.next_batch())
                time.sleep(0.01)
        except StopIteration:
            pass
        finally:
            part.close()
    live = [item for item in taken if not isinstance(item, ConnectionHealth)]
    assert sum(isinstance(item, Trade) for item in live) > 100
    session = tmp_path / "sessions" / recording.session
    (part_read,) = read_session([session])
    assert part_read.taken == len(live)
    assert replayed([session]) == live
    shutil.rmtree(session)
