"""Tape reading and merging. Expected counts, rows and ends come from tests/data/SOURCES.md and the files."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.tape import TapeError, merge_tapes, read_tape, tape_end, tape_instruments
from market.types import Trade

TAPES = Path(__file__).parents[1] / "data" / "tapes"
XRP = TAPES / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
BTC = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
MATIC = TAPES / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"
HEADER = "instrument_name,trade_id,side,price,size,created_time\n"


def _ms(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (tape, count per SOURCES.md, first row, last row) -- rows as in the files.
CASES = [
    (XRP, 12_477, ("XRP-ETH", 13519807, "sell", "0.00141342", "23.00000000", "2019-10-11T00:00:11.620"),
     ("XRP-ETH", 13532283, "sell", "0.00152787", "130.00000000", "2019-10-13T11:19:28.844")),
    (BTC, 19_904, ("BTC-USDT", 3735683259, "sell", "61837.63000000", "0.02000000", "2024-08-08T23:54:15.342"),
     ("BTC-USDT", 3735703162, "buy", "61602.02000000", "0.00536000", "2024-08-09T00:05:05.800")),
    (MATIC, 14, ("MATIC-USDT-SWAP", 104136693, "buy", "0.5747", "38.0", "2023-08-20T16:01:02.958"),
     ("MATIC-USDT-SWAP", 104136706, "buy", "0.5744", "1.0", "2023-08-20T16:01:54.962")),
]


def _row(trade: Trade) -> tuple[str, int, str, str, str, str]:
    return (trade.symbol, trade.trade_id, trade.side, format(trade.price, "f"), format(trade.size, "f"),
            trade.ts_event.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3])


@pytest.mark.parametrize(("path", "count", "first", "last"), CASES, ids=lambda v: getattr(v, "name", ""))
def test_counts_and_first_last_rows(path: Path, count: int, first: tuple[str, ...],
                                    last: tuple[str, ...]) -> None:
    trades = list(read_tape(path))
    assert len(trades) == count
    assert _row(trades[0]) == first
    assert _row(trades[-1]) == last
    assert all(t.exchange == "okx" and t.ts_event.tzinfo is UTC and t.ts_recv is None for t in trades)
    # SOURCES.md: ids contiguous (no gaps) in every tape.
    assert [t.trade_id for t in trades] == list(range(trades[0].trade_id, trades[0].trade_id + count))
    assert tape_end(path) == trades[-1].ts_event


def test_declared_ends_match_sources() -> None:
    assert tape_end(XRP) == _ms("2019-10-13T11:19:28.844")
    assert tape_end(BTC).replace(microsecond=0) == _ms("2024-08-09T00:05:05")
    assert tape_instruments(MATIC) == {"MATIC-USDT-SWAP"}


def test_merging_real_tapes_is_time_ordered_and_lazy() -> None:
    merged = merge_tapes([BTC, XRP, MATIC])
    assert iter(merged) is merged  # an iterator, not a list
    trades = list(merged)
    assert len(trades) == 19_904 + 12_477 + 14
    keys = [(t.ts_event, t.trade_id) for t in trades]
    assert keys == sorted(keys)
    assert [t.symbol for t in trades[:3]] == ["XRP-ETH"] * 3  # 2019 comes first whatever the argument order


def test_merge_ties_are_stable_across_instruments(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text(HEADER + "AAA-USDT,5,buy,1,1,1000\nAAA-USDT,6,buy,1,1,1000\nAAA-USDT,7,buy,1,1,3000\n")
    b.write_text(HEADER + "BBB-USDT,5,sell,2,1,1000\nBBB-USDT,9,sell,2,1,2000\n")
    order = [(t.symbol, t.trade_id) for t in merge_tapes([a, b])]
    assert order == [("AAA-USDT", 5), ("BBB-USDT", 5), ("AAA-USDT", 6), ("BBB-USDT", 9), ("AAA-USDT", 7)]
    assert [(t.symbol, t.trade_id) for t in merge_tapes([b, a])][:2] == [("BBB-USDT", 5), ("AAA-USDT", 5)]


def test_source_column_is_read(tmp_path: Path) -> None:
    tape = tmp_path / "s.csv"
    rows = "BTC-USDT,1,buy,0.00000062,3,1000,1\nBTC-USDT,2,sell,5,3,1000,\n"
    tape.write_text(HEADER.strip() + ",source\n" + rows)
    first, second = read_tape(tape)
    assert (first.source, second.source) == ("1", None)
    assert first.price == Decimal("0.00000062") and format(first.price, "f") == "0.00000062"


BAD_ROWS = [
    ("BTC-USDT,1,hold,1,1,1000\n", 2, "side 'hold' is neither buy nor sell"),
    ("BTC-USDT,1,buy,-1,1,1000\n", 2, "price '-1' is not a positive decimal"),
    ("BTC-USDT,1,buy,1,0,1000\n", 2, "size '0' is not a positive decimal"),
    ("BTC-USDT,1,buy,NaN,1,1000\n", 2, "price 'NaN'"),
    ("BTC-USDT,x1,buy,1,1,1000\n", 2, "trade_id 'x1' is not an integer"),
    ("BTC-USDT,1,buy,1,1,2024-01-01\n", 2, "created_time '2024-01-01' is not integer milliseconds"),
    ("BTC-USDT,1,buy,1,1\n", 2, "5 fields, expected 6"),
    (",1,buy,1,1,1000\n", 2, "empty instrument_name"),
    ("BTC-USDT,1,buy,1,1,1000\nBTC-USDT,2,buy,1,1,999\n", 3, "out of order"),
    ("BTC-USDT,1,buy,1,1,1000\n\nBTC-USDT,2,buy,1,1,1000\nBTC-USDT,1,buy,1,1,1000\n", 5, "out of order"),
]


@pytest.mark.parametrize(("rows", "line", "problem"), BAD_ROWS)
def test_bad_rows_raise_with_file_and_line(tmp_path: Path, rows: str, line: int, problem: str) -> None:
    tape = tmp_path / "bad.csv"
    tape.write_text(HEADER + rows)
    with pytest.raises(TapeError) as caught:
        list(read_tape(tape))
    assert str(caught.value).startswith(f"{tape}:{line}: ")
    assert problem in str(caught.value)
    assert (caught.value.path, caught.value.line) == (str(tape), line)


def test_bad_header_and_empty_file(tmp_path: Path) -> None:
    tape = tmp_path / "h.csv"
    tape.write_text("symbol,id,side,price,size,time\nBTC-USDT,1,buy,1,1,1000\n")
    with pytest.raises(TapeError, match=r"h\.csv:1: header"):
        list(read_tape(tape))
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(TapeError, match=r"e\.csv:1: empty file"):
        list(read_tape(empty))
    only_header = tmp_path / "o.csv"
    only_header.write_text(HEADER)
    assert list(read_tape(only_header)) == []
    with pytest.raises(TapeError, match="no trades"):
        tape_end(only_header)


def test_merge_reads_lazily_until_the_bad_row(tmp_path: Path) -> None:
    tape = tmp_path / "late.csv"
    tape.write_text(HEADER + "BTC-USDT,1,buy,1,1,1000\nBTC-USDT,2,buy,1,1,1001\nBTC-USDT,3,buy,oops,1,1002\n")
    merged = merge_tapes([tape])
    assert next(merged).trade_id == 1  # the bad line 4 has not been read yet
    assert next(merged).trade_id == 2
    with pytest.raises(TapeError, match=r"late\.csv:4: price 'oops'"):
        next(merged)
    bad_end = tmp_path / "end.csv"
    bad_end.write_text(HEADER + "BTC-USDT,1,buy,1,1,1000\nBTC-USDT,2,buy,1,1,x\n")
    with pytest.raises(TapeError, match=r"end\.csv:3: created_time 'x'"):
        tape_end(bad_end)
