"""The selection syntax of what to follow across exchanges (``okx:BTC-USDT,binance:BTC-USDT``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configs.selection import KNOWN_EXCHANGES, Followed, by_exchange, parse_selection
from connectors.exchange import EXCHANGES


def test_the_issue_example_and_order_are_kept() -> None:
    got = parse_selection("okx:BTC-USDT,binance:BTC-USDT, okx:ETH-USDT ")
    assert got == (
        Followed("okx", "BTC-USDT"),
        Followed("binance", "BTC-USDT"),
        Followed("okx", "ETH-USDT"),
    )
    assert by_exchange(got) == {"okx": ("BTC-USDT", "ETH-USDT"), "binance": ("BTC-USDT",)}
    assert [str(f) for f in got] == ["okx:BTC-USDT", "binance:BTC-USDT", "okx:ETH-USDT"]


def test_entries_without_an_exchange_keep_meaning_okx() -> None:
    assert parse_selection("BTC-USDT,ETH-USDT") == (Followed("okx", "BTC-USDT"), Followed("okx", "ETH-USDT"))
    assert parse_selection(["BTC-USDT-SWAP"], default_exchange="binance") == (
        Followed("binance", "BTC-USDT-SWAP"),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "at least one instrument"),
        ("  ", "at least one instrument"),
        ("okx:BTC-USDT,", "empty entry"),
        ("okx:BTC-USDT,,binance:BTC-USDT", "empty entry"),
        ("kraken:BTC-USD", "unknown exchange 'kraken'"),
        ("OKX:BTC-USDT", "unknown exchange 'OKX'"),
        ("binance:btc-usdt", "'btc-usdt' is not an instrument id"),
        ("binance:BTCUSDT", "'BTCUSDT' is not an instrument id"),
        ("binance:", "'' is not an instrument id"),
        ("okx:BTC-USDT,okx:BTC-USDT", "okx:BTC-USDT is listed more than once"),
        ("BTC-USDT,okx:BTC-USDT", "okx:BTC-USDT is listed more than once"),
    ],
)
def test_bad_selections_name_the_entry(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        parse_selection(text)


def test_the_same_instrument_on_two_exchanges_is_two_entries() -> None:
    assert len(parse_selection("okx:BTC-USDT,binance:BTC-USDT")) == 2


def test_known_exchanges_are_the_connectors() -> None:
    assert KNOWN_EXCHANGES == EXCHANGES


pairs = st.lists(
    st.tuples(
        st.sampled_from(KNOWN_EXCHANGES), st.from_regex(r"[A-Z0-9]{1,5}-[A-Z0-9]{1,5}", fullmatch=True)
    ),
    min_size=1,
    max_size=8,
    unique=True,
)


@given(pairs)
def test_written_selections_read_back(chosen: list[tuple[str, str]]) -> None:
    text = ",".join(f"{exchange}:{inst}" for exchange, inst in chosen)
    assert parse_selection(text) == tuple(Followed(e, i) for e, i in chosen)
