"""In a cluster each process lists only the tape partitions whose leading instrument (least name) it
builds: every partition is read by exactly one process, and that process is the one named by ``builds``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from connectors.replay import TapeSource

HEADER = "instrument_name,trade_id,side,price,size,created_time\n"
T0 = 1_700_000_000_000


def _tape(folder: Path, name: str, symbols: list[str]) -> Path:
    path = folder / name
    rows = "".join(f"{symbol},{n},buy,1,1,{T0 + n}\n" for n, symbol in enumerate(symbols, start=1))
    path.write_text(HEADER + rows)
    return path


def read_all(source: TapeSource) -> None:
    """Read every partition of ``source`` to its end."""
    for name in source.list_parts():
        part = source.build_part("tapes", name, None)
        with contextlib.suppress(StopIteration):
            while True:
                part.next_batch()


def test_each_partition_is_listed_by_the_process_building_its_leading_instrument(tmp_path: Path) -> None:
    a = _tape(tmp_path, "a.csv", ["B-USDT", "A-USDT"])  # with b: one partition led by A-USDT
    b = _tape(tmp_path, "b.csv", ["A-USDT"])
    c = _tape(tmp_path, "c.csv", ["C-USDT"])
    d = _tape(tmp_path, "d.csv", ["D-USDT", "E-USDT"])
    owner = {"A-USDT": 1, "B-USDT": 0, "C-USDT": 0, "D-USDT": 1, "E-USDT": 0}
    tapes = [c, a, d, b]
    everything = TapeSource(tapes)
    listed = {
        process: TapeSource(tapes, builds=lambda symbol, p=process: owner[symbol] == p).list_parts()
        for process in (0, 1)
    }
    assert sorted(listed[0] + listed[1]) == sorted(everything.list_parts())
    groups = {part: everything.groups[int(part.rsplit("-", 1)[1])] for part in everything.list_parts()}
    assert sorted(groups[part] for part in listed[0]) == [[c]]
    assert sorted(groups[part] for part in listed[1]) == [[a, b], [d]]


def test_a_process_that_builds_none_of_the_instruments_lists_nothing(tmp_path: Path) -> None:
    tape = _tape(tmp_path, "x.csv", ["X-USDT"])
    assert TapeSource([tape], builds=lambda symbol: False).list_parts() == []
    assert TapeSource([tape]).list_parts() == ["tapes-0"]


def test_summaries_read_by_the_tape_check_are_used_as_a_scan_would_be(tmp_path: Path) -> None:
    from app.resources import check_tapes

    a = _tape(tmp_path, "a.csv", ["B-USDT", "A-USDT"])
    b = _tape(tmp_path, "b.csv", ["A-USDT", "A-USDT", "A-USDT"])
    c = _tape(tmp_path, "c.csv", ["C-USDT"])
    tapes = [c, a, b]
    scanned = check_tapes(tapes, "REPLAY_TAPES")
    given, own = TapeSource(tapes, scanned=scanned), TapeSource(tapes)
    read_all(given)
    read_all(own)
    assert (given.groups, given.ends, given.list_parts()) == (own.groups, own.ends, own.list_parts())
    ms = {symbol: int(end.timestamp() * 1000) - T0 for symbol, end in given.ends.items()}
    assert ms == {"A-USDT": 3, "B-USDT": 2, "C-USDT": 1}  # each tape's latest trade, the most per name
    with pytest.raises(ValueError, match="not those of the tapes"):
        TapeSource([a, b, c], scanned=scanned)
