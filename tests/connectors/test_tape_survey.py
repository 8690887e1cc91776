"""The survey of a tape by a byte count says what the full scan says, or declines (None), never
otherwise; a replay whose tape ends are found by reading them ends every series where the scan would."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.replay import TapeSource
from connectors.tape import TapeError, scan_tape
from connectors.tape_survey import survey_tape, tape_instrument
from tests.connectors.test_tape_share import read_all

HEADER = "instrument_name,trade_id,side,price,size,created_time"
T0 = 1_700_000_000_000
ROWS = [
    f"BTC-USDT,1,buy,1,1,{T0}",
    f"BTC-USDT,2,sell,2,1,{T0 + 9}",
    f"ETH-USDT,3,buy,1,1,{T0 + 5}",
    f'BTC-USDT,"4",buy,1,1,{T0 + 3}',
    "BTC-USDT,5,buy",
    f"BTC-USDTX,6,buy,1,1,{T0 + 4}",
    f"BTC-USDT,7,buy,x,1,{T0 + 99}",
    "",
    "  ",
    "\r",
    "junk",
]


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(st.sampled_from(ROWS), min_size=0, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    last=st.sampled_from(["", "\n", "\r\n"]),
    chunk=st.sampled_from([1, 2, 5, 1 << 20]),
)
def test_the_byte_count_agrees_with_the_scan_or_declines(
    tmp_path_factory: pytest.TempPathFactory, rows: list[str], newline: str, last: str, chunk: int
) -> None:
    path = tmp_path_factory.mktemp("survey") / "t.csv"
    path.write_bytes((HEADER + "\n" + newline.join(rows) + last).encode())
    try:
        scanned: object = scan_tape(path).instruments
    except TapeError as error:
        scanned = str(error)
    surveyed = tape_instrument(path, chunk)
    if surveyed is not None:
        assert scanned == {surveyed}


def test_a_plain_tape_is_surveyed_and_others_scanned(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text(HEADER + "\n" + "\n".join(ROWS[:2]) + "\n")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(HEADER + "\n" + "\n".join(ROWS[:3]) + "\n")
    assert survey_tape(plain).instruments == {"BTC-USDT"} and not survey_tape(plain).known_end
    assert survey_tape(mixed) == scan_tape(mixed)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n" + ROWS[0] + "\n")
    with pytest.raises(TapeError) as scanned:
        scan_tape(bad)
    with pytest.raises(TapeError, match="header") as surveyed:
        survey_tape(bad)
    assert str(surveyed.value) == str(scanned.value)


def test_ends_found_by_reading_are_those_of_the_scan(tmp_path: Path) -> None:
    """A tape's end is the latest valid trade time wherever its row is (here neither its first nor
    last row); an instrument's end is the latest of its tapes' ends."""
    a = tmp_path / "a.csv"
    a.write_text(HEADER + "\n" + "\n".join([ROWS[0], ROWS[1], ROWS[6], ROWS[0]]) + "\n")
    b = tmp_path / "b.csv"
    b.write_text(HEADER + "\n" + "\n".join([ROWS[2], f"BTC-USDT,8,buy,1,1,{T0 + 7}"]) + "\n")
    c = tmp_path / "c.csv"
    c.write_text(HEADER + "\n" + f"SOL-USDT,9,buy,1,1,{T0 + 2}\n")
    source = TapeSource([a, b, c])
    assert not survey_tape(a).known_end and survey_tape(b).known_end
    read_all(source)
    ms = {symbol: int(end.timestamp() * 1000) - T0 for symbol, end in source.ends.items()}
    assert ms == {"BTC-USDT": 9, "ETH-USDT": 7, "SOL-USDT": 2}
    scanned = TapeSource([a, b, c], scanned=[scan_tape(t) for t in (a, b, c)])
    assert scanned.ends == source.ends


def test_in_a_cluster_a_tape_of_a_shared_group_is_scanned_before_the_start(tmp_path: Path) -> None:
    """Its end must be known where all its group's instruments are built, not only where it is read."""
    a = tmp_path / "a.csv"
    a.write_text(HEADER + "\n" + ROWS[1] + "\n")
    b = tmp_path / "b.csv"
    b.write_text(HEADER + "\n" + "\n".join([ROWS[2], ROWS[0]]) + "\n")
    c = tmp_path / "c.csv"
    c.write_text(HEADER + "\n" + f"SOL-USDT,9,buy,1,1,{T0 + 2}\n")
    source = TapeSource([a, b, c], builds=lambda symbol: True)
    ms = {symbol: int(end.timestamp() * 1000) - T0 for symbol, end in source.ends.items()}
    assert ms == {"BTC-USDT": 9, "ETH-USDT": 5}  # SOL-USDT's group is read where it is built
