"""Recorded sessions, the file format: every input kind reads back as recorded; rotation, pruning, a file
cut short, an unknown version, files of two sessions (a scripted live session:
test_recording_session.py; the real source: test_recording_source.py).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from connectors.okx.parser import parse_frame
from connectors.okx.session import SessionSource, read_session
from connectors.okx.session_format import SessionError, SessionLines, decode_event, encode_event
from market.sequencing import (
    Backfilled,
    Disconnected,
    Event,
    FetchBackfill,
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
from tests.connectors.recording_kit import (
    at,
    recorder,
    sample_frames,
    sample_rest_trades,
    sequencer,
)

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
