"""The tape parser remembers the fields of valid rows (times, prices, sizes, instruments) and builds a
row made only of remembered fields without checking them again. That fast path must give exactly what
the strict path gives: the same trade (same values, same decimal exponents) or the same problem, row for
row, whatever came before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.tape import _RowParser
from market.types import Trade
from tests.conftest import TEST_DATA

BTC = TEST_DATA / "tapes" / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
T0 = 1_700_000_000_000

SYMBOLS = ["BTC-USDT", "ETH-USDT", "", "BTC\x00USDT", "X" * 65]
IDS = ["1", "12", "0", str(2**63 - 1), str(2**63), "x1", "\u0661\u0662", "-3"]
SIDES = ["buy", "sell", "hold"]
NUMBERS = ["1", "1.50", "1.5", "0.00141342", "-1", "0", "NaN", "1E-301", "1e5", "9" * 13, "one", " 2", "1_0"]
TIMES = [str(T0), str(T0 + 1), "1000", "253402300799000", "99999999999999999999", "x", str(T0 + 2)]

rows = st.tuples(
    st.sampled_from(SYMBOLS),
    st.sampled_from(IDS),
    st.sampled_from(SIDES),
    st.sampled_from(NUMBERS),
    st.sampled_from(NUMBERS),
    st.sampled_from(TIMES),
).map(lambda fields: ",".join(fields) + "\n")


def _shown(result: Trade | str) -> object:
    """A trade with the exact text of its decimals (1.5 and 1.50 are equal Decimals), or the problem."""
    if isinstance(result, Trade):
        return (result, str(result.price), str(result.size), result.ts_event.isoformat())
    return result


def _cold(lines: list[str]) -> list[object]:
    return [_shown(_RowParser(False)(line)) for line in lines]  # a fresh parser: nothing remembered


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, min_size=1, max_size=40))
def test_remembered_fields_give_what_the_strict_checks_give(lines: list[str]) -> None:
    warm = _RowParser(False)
    assert [_shown(warm(line)) for line in lines] == _cold(lines)


def test_a_real_tape_parses_the_same_warm_and_cold() -> None:
    with BTC.open() as handle:
        next(handle)
        lines = [line for _, line in zip(range(3000), handle, strict=False)]
    warm = _RowParser(False)
    parsed = [_shown(warm(line)) for line in lines]
    assert parsed == _cold(lines)
    assert all(isinstance(p, tuple) for p in parsed)


def test_the_memories_stay_bounded() -> None:
    parse = _RowParser(False)
    for i in range(70_000):
        assert isinstance(parse(f"BTC-USDT,{i + 1},buy,{i + 1},{i + 2},{T0 + i}\n"), Trade)
    assert len(parse._numbers) <= 65_536 and len(parse._times) <= 4096
