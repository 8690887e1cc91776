"""Tape reading and merging. Expected counts, rows and ends come from tests/data/SOURCES.md and the files;
expected trades of hand-written tapes are written out here, never derived from the reader."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.tape import (
    TapeError,
    merge_arrivals,
    merge_tapes,
    read_arrivals,
    read_tape,
    scan_tape,
    tape_end,
    tape_instruments,
)
from market.types import EPOCH, Rejected, Trade
from tests.connectors.test_tape_share import read_all

TAPES = Path(__file__).parents[1] / "data" / "tapes"
XRP = TAPES / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
BTC = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
MATIC = TAPES / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"
HEADER = "instrument_name,trade_id,side,price,size,created_time\n"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z, in ms: a plausible trade time for hand-written rows


def _ms(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _at(offset_ms: int) -> datetime:
    return datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC) + timedelta(milliseconds=offset_ms)


def _tape(tmp_path: Path, name: str, rows: str, header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + rows)
    return path


def _ids(items: object) -> list[tuple[str, int]]:
    return [(t.symbol, t.trade_id) for t in items if isinstance(t, Trade)]  # type: ignore[attr-defined]


# (tape, count per SOURCES.md, first row, last row) -- rows as in the files.
CASES = [
    (
        XRP,
        12_477,
        ("XRP-ETH", 13519807, "sell", "0.00141342", "23.00000000", "2019-10-11T00:00:11.620"),
        ("XRP-ETH", 13532283, "sell", "0.00152787", "130.00000000", "2019-10-13T11:19:28.844"),
    ),
    (
        BTC,
        19_904,
        ("BTC-USDT", 3735683259, "sell", "61837.63000000", "0.02000000", "2024-08-08T23:54:15.342"),
        ("BTC-USDT", 3735703162, "buy", "61602.02000000", "0.00536000", "2024-08-09T00:05:05.800"),
    ),
    (
        MATIC,
        14,
        ("MATIC-USDT-SWAP", 104136693, "buy", "0.5747", "38.0", "2023-08-20T16:01:02.958"),
        ("MATIC-USDT-SWAP", 104136706, "buy", "0.5744", "1.0", "2023-08-20T16:01:54.962"),
    ),
]


def _row(trade: Trade) -> tuple[str, int, str, str, str, str]:
    return (
        trade.symbol,
        trade.trade_id,
        trade.side,
        format(trade.price, "f"),
        format(trade.size, "f"),
        trade.ts_event.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
    )


@pytest.mark.parametrize(("path", "count", "first", "last"), CASES, ids=lambda v: getattr(v, "name", ""))
def test_counts_and_first_last_rows(
    path: Path, count: int, first: tuple[str, ...], last: tuple[str, ...]
) -> None:
    trades = list(read_tape(path))
    assert len(trades) == count
    assert _row(trades[0]) == first
    assert _row(trades[-1]) == last
    assert all(t.exchange == "okx" and t.ts_event.tzinfo is UTC and t.ts_recv is None for t in trades)
    # SOURCES.md: ids contiguous (no gaps) in every tape.
    assert [t.trade_id for t in trades] == list(range(trades[0].trade_id, trades[0].trade_id + count))
    assert tape_end(path) == trades[-1].ts_event
    assert list(read_arrivals(path)) == trades  # a sorted archive reads the same either way


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
    assert list(merge_arrivals([BTC, XRP, MATIC])) == trades  # sorted tapes: arrival merge = time merge


def test_merge_ties_are_stable_across_instruments(tmp_path: Path) -> None:
    a = _tape(
        tmp_path, "a.csv", f"AAA-USDT,5,buy,1,1,{T0}\nAAA-USDT,6,buy,1,1,{T0}\nAAA-USDT,7,buy,1,1,{T0 + 2}\n"
    )
    b = _tape(tmp_path, "b.csv", f"BBB-USDT,5,sell,2,1,{T0}\nBBB-USDT,9,sell,2,1,{T0 + 1}\n")
    expected = [("AAA-USDT", 5), ("BBB-USDT", 5), ("AAA-USDT", 6), ("BBB-USDT", 9), ("AAA-USDT", 7)]
    assert _ids(merge_tapes([a, b])) == expected
    assert _ids(merge_arrivals([a, b])) == expected
    assert _ids(merge_tapes([b, a]))[:2] == [("BBB-USDT", 5), ("AAA-USDT", 5)]


def test_source_column_is_read(tmp_path: Path) -> None:
    tape = _tape(
        tmp_path,
        "s.csv",
        f"BTC-USDT,1,buy,0.00000062,3,{T0},1\nBTC-USDT,2,sell,5,3,{T0},\n",
        header=HEADER.strip() + ",source\n",
    )
    first, second = read_tape(tape)
    assert (first.source, second.source) == ("1", None)
    assert first.price == Decimal("0.00000062") and format(first.price, "f") == "0.00000062"


# --- arrival order ------------------------------------------------------------------------------------

ARRIVALS = (  # a recording: out of event-time order, the latest trade in the middle
    f"BTC-USDT,3,buy,100,1,{T0 + 500}\n"
    f"BTC-USDT,1,sell,101,2,{T0 + 100}\n"
    f"BTC-USDT,4,buy,102,1,{T0 + 9000}\n"
    f"BTC-USDT,2,buy,99.5,1,{T0 + 300}\n"
)


def test_arrival_order_is_kept_and_the_end_is_the_latest_trade_not_the_last_row(tmp_path: Path) -> None:
    tape = _tape(tmp_path, "rec.csv", ARRIVALS)
    trades = list(read_arrivals(tape))
    assert [(t.trade_id, t.price, t.size, t.side, t.ts_event) for t in trades] == [
        (3, Decimal("100"), Decimal(1), "buy", _at(500)),
        (1, Decimal("101"), Decimal(2), "sell", _at(100)),
        (4, Decimal("102"), Decimal(1), "buy", _at(9000)),
        (2, Decimal("99.5"), Decimal(1), "buy", _at(300)),
    ]
    assert tape_end(tape) == _at(9000)
    assert scan_tape(tape).instruments == {"BTC-USDT"}
    with pytest.raises(TapeError, match=r"rec\.csv:3: out of order"):  # the strict archive reader refuses it
        list(read_tape(tape))


def test_unsorted_tapes_sharing_an_instrument_keep_their_row_order(tmp_path: Path) -> None:
    a = _tape(
        tmp_path,
        "a.csv",
        f"X-USDT,2,buy,1,1,{T0 + 200}\nX-USDT,1,buy,1,1,{T0 + 100}\n"
        f"X-USDT,5,buy,1,1,{T0 + 900}\nX-USDT,3,buy,1,1,{T0 + 300}\n",
    )
    b = _tape(tmp_path, "b.csv", f"X-USDT,4,buy,1,1,{T0 + 400}\nX-USDT,6,buy,1,1,{T0 + 350}\n")
    # Heads by (ts_event, id): a2(200) < b4(400) -> a2; a1(100) -> a1; a5(900) vs b4(400) -> b4;
    # b6(350) -> b6; b is done -> a5, a3.
    assert [t.trade_id for t in merge_arrivals([a, b])] == [2, 1, 4, 6, 5, 3]  # type: ignore[union-attr]
    assert [t.trade_id for t in merge_arrivals([b, a])] == [2, 1, 4, 6, 5, 3]  # type: ignore[union-attr]


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(range(60)))
def test_any_row_order_is_read_as_written(tmp_path_factory: pytest.TempPathFactory, order: list[int]) -> None:
    with XRP.open() as handle:
        rows = list(csv.reader(handle))[1:61]
    shuffled = [rows[i] for i in order]
    tape = tmp_path_factory.mktemp("perm") / "p.csv"
    tape.write_text(HEADER + "".join(",".join(r) + "\n" for r in shuffled))
    got = [(t.trade_id, t.price, t.ts_event) for t in read_arrivals(tape)]  # type: ignore[union-attr]
    assert got == [(int(r[1]), Decimal(r[3]), EPOCH + timedelta(milliseconds=int(r[5]))) for r in shuffled]
    assert tape_end(tape) == max(EPOCH + timedelta(milliseconds=int(r[5])) for r in rows)


# --- bad rows -----------------------------------------------------------------------------------------

BAD_ROWS = [  # (row, problem): each is rejected, the trades around it are kept
    ("BTC-USDT,1,hold,1,1,{t}", "side 'hold' is neither buy nor sell"),
    ("BTC-USDT,1,buy,-1,1,{t}", "price -1 is not positive"),
    ("BTC-USDT,1,buy,1,0,{t}", "size 0 is not positive"),
    ("BTC-USDT,1,buy,NaN,1,{t}", "price NaN is not finite"),
    ("BTC-USDT,1,buy,one,1,{t}", "price 'one' is not a positive decimal"),
    ("BTC-USDT,x1,buy,1,1,{t}", "trade_id 'x1' is not an integer"),
    ("BTC-USDT,1,buy,1,1,2024-01-01", "created_time '2024-01-01' is not integer milliseconds"),
    ("BTC-USDT,1,buy,1,1", "5 fields, expected 6"),
    (",1,buy,1,1,{t}", "empty instrument_name"),
    ("BTC-USDT,1,buy," + "9" * 400 + ",1,{t}", "price 9999999999"),  # 400 digits
    ("BTC-USDT,1,buy,1E-301,1,{t}", "more than 16 digits after the point"),
    ("BTC-USDT,1,buy,1,1,253402300799000", "outside [2009-01-03, 2100-01-01)"),  # 9999-12-31
    ("BTC-USDT,1,buy,1,1,99999999999999999999", "out of range"),  # beyond any datetime
    ("BTC-USDT,1,buy,1,1,1000", "outside [2009-01-03, 2100-01-01)"),  # 1970
    (f"BTC-USDT,{2**63},buy,1,1,{{t}}", "trade id 9223372036854775808 is outside 1..2^63-1"),  # beyond int8
    ("BTC-USDT,0,buy,1,1,{t}", "trade id 0 is outside"),
    ("BTC\x00USDT,1,buy,1,1,{t}", "unprintable"),
    ('"BTC-USDT,1,buy,1,1,{t}', "1 fields, expected 6"),  # an unterminated quote
    ('"' + "x" * 200_000 + '",1,buy,1,1,{t}', "unreadable csv: field larger than field limit"),
]


@pytest.mark.parametrize(("row", "problem"), BAD_ROWS, ids=[p for _, p in BAD_ROWS])
def test_a_bad_row_is_a_reject_and_the_replay_reads_on(tmp_path: Path, row: str, problem: str) -> None:
    bad = row.format(t=T0 + 700)
    tape = _tape(
        tmp_path, "bad.csv", f"BTC-USDT,10,buy,1,1,{T0 + 900}\n{bad}\nBTC-USDT,11,buy,1,1,{T0 + 800}\n"
    )
    first, reject, last = read_arrivals(tape)
    assert isinstance(first, Trade) and isinstance(last, Trade)
    assert (first.trade_id, last.trade_id) == (10, 11)
    assert isinstance(reject, Rejected)
    assert reject.source == "tape"
    assert reject.raw == bad.encode()
    assert reject.reason.startswith(f"{tape}:3: ")
    assert problem in reject.reason
    assert reject.ts_recv == _at(900)  # the tape's clock: the newest trade time read before it
    assert tape_end(tape) == _at(900)
    with pytest.raises(TapeError) as caught:  # the strict reader stops there, naming file and line
        list(read_tape(tape))
    assert str(caught.value).startswith(f"{tape}:3: ") and problem in str(caught.value)
    assert (caught.value.path, caught.value.line) == (str(tape), 3)


def test_rejects_are_stamped_deterministically(tmp_path: Path) -> None:
    raw = b"BTC-USDT,1,buy,1,1,\xff\xfe\n"  # not UTF-8: kept byte for byte
    tape = tmp_path / "lead.csv"
    tape.write_bytes(HEADER.encode() + b"\n" + raw + f"BTC-USDT,2,buy,1,1,{T0 + 50}\nnonsense\n".encode())
    items = list(read_arrivals(tape))
    assert [type(i) for i in items] == [Rejected, Trade, Rejected]
    assert items[0].raw == raw.rstrip(b"\n") and items[0].reason.startswith(f"{tape}:3: ")  # type: ignore[union-attr]
    assert items[0].ts_recv == items[2].ts_recv == _at(50)  # type: ignore[union-attr]
    assert items[2].reason == f"{tape}:5: 1 fields, expected 6"  # type: ignore[union-attr]
    assert list(read_arrivals(tape)) == items  # the same again: a re-run stores nothing twice
    hopeless = _tape(tmp_path, "none.csv", "a,b\nBTC-USDT,1,buy,1,1,1000\n")
    assert [r.ts_recv for r in read_arrivals(hopeless)] == [EPOCH, EPOCH]  # type: ignore[union-attr]
    assert scan_tape(hopeless).end is None
    with pytest.raises(TapeError, match=r"none\.csv:2: tape has no valid trades"):
        tape_end(hopeless)


def test_the_end_ignores_rows_that_are_not_trades(tmp_path: Path) -> None:
    tape = _tape(
        tmp_path,
        "end.csv",
        f"BTC-USDT,1,buy,1,1,{T0 + 10}\nBTC-USDT,2,buy,1,1,{T0 + 30}\n"
        "BTC-USDT,3,buy,1,1,253402300799000\n"  # year 9999: not plausible
        f"BTC-USDT,4,buy,{'9' * 400},1,{T0 + 90}\n"  # latest time, bad price
        f"BTC-USDT,5,buy,1,1,{T0 + 20}\n",
    )
    assert tape_end(tape) == _at(30)


# --- files that are not tapes -------------------------------------------------------------------------


def test_a_file_that_is_not_a_tape_is_an_error_naming_it(tmp_path: Path) -> None:
    tape = _tape(tmp_path, "h.csv", f"BTC-USDT,1,buy,1,1,{T0}\n", header="symbol,id,side,price,size,time\n")
    for read in (read_tape, read_arrivals, scan_tape):
        with pytest.raises(TapeError, match=r"h\.csv:1: header 'symbol,id,side,price,size,time' is not"):
            list(read(tape))  # type: ignore[call-overload]
    empty = _tape(tmp_path, "e.csv", "", header="")
    with pytest.raises(TapeError, match=r"e\.csv:1: empty file"):
        list(read_arrivals(empty))
    only_header = _tape(tmp_path, "o.csv", "")
    assert list(read_tape(only_header)) == list(read_arrivals(only_header)) == []
    with pytest.raises(TapeError, match=r"o\.csv:2: tape has no trades"):
        scan_tape(only_header)
    missing = tmp_path / "missing.csv"
    with pytest.raises(TapeError, match=r"^\S+missing\.csv: cannot open: No such file or directory$"):
        scan_tape(missing)


def test_blank_lines_count_in_line_numbers(tmp_path: Path) -> None:
    tape = _tape(
        tmp_path,
        "blank.csv",
        f"BTC-USDT,1,buy,1,1,{T0}\n\nBTC-USDT,2,buy,1,1,{T0}\nBTC-USDT,1,buy,1,1,{T0}\n",
    )
    with pytest.raises(TapeError, match=r"blank\.csv:5: out of order"):
        list(read_tape(tape))
    assert [t.trade_id for t in read_arrivals(tape)] == [1, 2, 1]  # type: ignore[union-attr]


def test_merge_reads_lazily_until_the_bad_row(tmp_path: Path) -> None:
    tape = _tape(
        tmp_path,
        "late.csv",
        f"BTC-USDT,1,buy,1,1,{T0}\nBTC-USDT,2,buy,1,1,{T0 + 1}\nBTC-USDT,3,buy,oops,1,{T0 + 2}\n",
    )
    merged = merge_tapes([tape])
    assert next(merged).trade_id == 1  # the bad line 4 has not been read yet
    assert next(merged).trade_id == 2
    with pytest.raises(TapeError, match=r"late\.csv:4: price 'oops'"):
        next(merged)


def test_replay_groups_and_ends_of_unsorted_tapes(tmp_path: Path) -> None:
    """Tapes sharing an instrument form one partition; an instrument's end is the latest trade time of
    the tapes holding it (their maximum, not their last row), whatever instrument that trade is of."""
    from connectors.replay import TapeSource

    a = _tape(tmp_path, "a.csv", f"X-USDT,2,buy,1,1,{T0 + 9000}\nY-USDT,1,buy,1,1,{T0 + 100}\n")
    b = _tape(tmp_path, "b.csv", f"Y-USDT,7,buy,1,1,{T0 + 20000}\nY-USDT,6,buy,1,1,{T0 + 15000}\n")
    c = _tape(tmp_path, "c.csv", f"Z-USDT,3,buy,1,1,{T0 + 5000}\nZ-USDT,4,buy,1,1,{T0 + 1}\n")
    source = TapeSource([c, b, a])
    assert sorted(source.groups) == [[a, b], [c]]
    read_all(source)  # c's and b's ends are found by reading them (connectors.tape_survey)
    assert source.ends == {"X-USDT": _at(9000), "Y-USDT": _at(20000), "Z-USDT": _at(5000)}
    assert TapeSource([a, c], until=_at(50)).ends == {"X-USDT": _at(50), "Y-USDT": _at(50), "Z-USDT": _at(50)}


def test_a_resumed_partition_goes_on_after_what_it_had_emitted(tmp_path: Path) -> None:
    """The resume state is the count of items emitted (trades and rejects, in arrival order)."""
    from connectors.replay import TapeSource

    tape = _tape(
        tmp_path,
        "r.csv",
        "".join(f"X-USDT,{n},buy,1,1,{T0 + (7 * n) % 11}\n" for n in range(1, 9))
        + "junk\n"
        + f"X-USDT,9,buy,1,1,{T0}\n",
    )
    source = TapeSource([tape], batch_size=3)
    first = source.build_part("step", "tapes-0", None)
    head = first.next_batch() + first.next_batch()
    resumed = source.build_part("step", "tapes-0", first.snapshot())
    rest = resumed.next_batch() + resumed.next_batch()
    with pytest.raises(StopIteration):
        resumed.next_batch()
    assert [getattr(i, "trade_id", "reject") for i in head + rest] == [*range(1, 9), "reject", 9]
    assert resumed.snapshot() == 10
