"""The OKX frame parser against every real message in tests/data/okx-samples (sources: SOURCES.md).

The oracle is the sample JSON itself: every Trade field must equal the message's strings exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.okx.parser import parse_candle_push, parse_frame, parse_rest_candles, parse_rest_trades
from connectors.okx.wire import (
    ErrorEvent,
    ExchangeCandle,
    Notice,
    OkxParseError,
    OkxRestError,
    OtherEvent,
    OtherPush,
    Pong,
    SubscriptionAck,
)
from market.types import Rejected, Trade

SAMPLES = Path(__file__).parents[1] / "data" / "okx-samples"
RECV = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TRADE_ITEM = {
    "instId": "BTC-USDT",
    "tradeId": "1062992715",
    "px": "83772.6",
    "sz": "0.0000178",
    "side": "buy",
    "ts": "1790358565298",
    "count": "1",
    "source": "1",
    "seqId": 81625379835,
}


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines() if line.strip()]


def _server_messages(name: str) -> list[Any]:
    return [line["msg"] for line in _lines(name) if line.get("dir", "recv") == "recv" and "msg" in line]


def _frame(items: list[Any] | Any, channel: str = "trades") -> bytes:
    return json.dumps({"arg": {"channel": channel, "instId": "BTC-USDT"}, "data": items}).encode()


def assert_trade_equals_item(trade: Trade, item: dict[str, Any], ts_recv: datetime | None) -> None:
    assert trade.exchange == "okx"
    assert trade.symbol == item["instId"]
    assert trade.trade_id == int(item["tradeId"])
    # Decimal(str) keeps the exchange's digits exactly (format "f": plain notation, same trailing zeros).
    assert trade.price == Decimal(item["px"]) and format(trade.price, "f") == item["px"]
    assert trade.size == Decimal(item["sz"]) and format(trade.size, "f") == item["sz"]
    assert trade.side == item["side"]
    assert trade.ts_event == EPOCH + timedelta(milliseconds=int(item["ts"]))
    assert trade.ts_event.tzinfo is UTC
    assert trade.ts_event.microsecond == int(item["ts"][-3:]) * 1000
    assert trade.ts_recv == ts_recv
    assert trade.count == int(item.get("count", "1"))
    assert trade.seq_id == item.get("seqId")
    assert trade.source == item.get("source")


def check_push(msg: dict[str, Any]) -> int:
    """Parse one real server message, check the result against the message; return trades seen."""
    for raw in (orjson.dumps(msg), json.dumps(msg)):  # bytes and str frames
        result = parse_frame(raw, RECV)
        assert not isinstance(result, Rejected), result.reason
        if "event" in msg:
            check_event(msg, result)
        elif msg["arg"]["channel"] in ("trades", "trades-all"):
            assert isinstance(result, list) and len(result) == len(msg["data"])
            for trade, item in zip(result, msg["data"], strict=True):
                assert_trade_equals_item(trade, item, RECV)
                assert trade.symbol == msg["arg"]["instId"]
        else:
            assert isinstance(result, OtherPush)
            assert result.channel == msg["arg"]["channel"]
            assert result.inst_id == msg["arg"].get("instId")
            assert result.data == msg["data"]
            if result.channel.startswith("candle"):
                check_candles(parse_candle_push(result), msg["data"])
    is_trades = "event" not in msg and msg["arg"]["channel"] in ("trades", "trades-all")
    return len(msg["data"]) if is_trades else 0


def check_event(msg: dict[str, Any], result: object) -> None:
    event = msg["event"]
    if event in ("subscribe", "unsubscribe"):
        assert isinstance(result, SubscriptionAck)
        assert (result.op, result.arg, result.conn_id, result.request_id) == (
            event,
            msg["arg"],
            msg.get("connId"),
            msg.get("id"),
        )
        assert result.channel == msg["arg"]["channel"]
    elif event == "error":
        assert isinstance(result, ErrorEvent)
        assert (result.code, result.msg, result.conn_id, result.request_id) == (
            msg["code"],
            msg["msg"],
            msg.get("connId"),
            msg.get("id"),
        )
    elif event == "notice":
        assert isinstance(result, Notice)
        assert (result.code, result.msg, result.conn_id) == ("64008", msg["msg"], msg["connId"])
    else:
        assert isinstance(result, OtherEvent) and result.event == event and result.msg == msg


def check_candles(result: list[ExchangeCandle] | Rejected, rows: list[list[str]]) -> None:
    assert isinstance(result, list), result
    for candle, row in zip(result, rows, strict=True):
        assert candle.open_time == EPOCH + timedelta(milliseconds=int(row[0]))
        values = (
            candle.open,
            candle.high,
            candle.low,
            candle.close,
            candle.vol,
            candle.vol_ccy,
            candle.vol_ccy_quote,
        )
        assert [format(v, "f") for v in values] == row[1:8]
        assert candle.confirmed is (row[8] == "1")


PUSH_FILES = [
    "trades.jsonl",
    "trades-all.jsonl",
    "events-subscribe-unsubscribe.jsonl",
    "events-error.jsonl",
    "events-notice.jsonl",
    "candle.jsonl",
    "books.jsonl",
    "books5.jsonl",
    "books-l2-tbt.jsonl",
    "bbo-tbt.jsonl",
    "tickers.jsonl",
    "other-public.jsonl",
]


@pytest.mark.parametrize("name", PUSH_FILES)
def test_every_sample_message_parses_to_its_fields(name: str) -> None:
    messages = _server_messages(name)
    assert messages
    for msg in messages:
        check_push(msg)


def test_every_sample_file_is_covered() -> None:
    sessions = {p.name for p in SAMPLES.glob("session-*.jsonl")}
    rest = {p.name for p in SAMPLES.glob("rest-*.jsonl")}
    assert {p.name for p in SAMPLES.glob("*.jsonl")} == set(PUSH_FILES) | sessions | rest
    assert len(sessions) == 3


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("session-*.jsonl")))
def test_recorded_sessions_parse_without_a_reject(name: str) -> None:
    lines = _lines(name)
    received = [line["msg"] for line in lines if line["dir"] == "recv"]
    trades = sum(check_push(msg) for msg in received)
    pushes = [m for m in received if "event" not in m and m["arg"]["channel"] == "trades"]
    assert trades == sum(len(m["data"]) for m in pushes)
    assert trades > 0
    # Within the session, per instrument, trade ids only increase (PROTOCOL-NOTES 4.1 [CF-*]).
    last: dict[str, int] = {}
    for msg in received:
        result = parse_frame(orjson.dumps(msg), RECV)
        if isinstance(result, list):
            for trade in result:
                assert trade.trade_id > last.get(trade.symbol, -1) or trade.trade_id == last[trade.symbol]
                last[trade.symbol] = trade.trade_id


def test_trade_variants_with_and_without_count_source_seqid() -> None:
    shapes = {frozenset(item) for msg in _server_messages("trades.jsonl") for item in msg["data"]}
    base = {"instId", "tradeId", "px", "sz", "side", "ts"}
    assert frozenset(base) in shapes  # 2021-22
    assert frozenset(base | {"count"}) in shapes  # 2025
    assert frozenset(base | {"count", "source", "seqId"}) in shapes  # 2026
    aggregated = parse_frame(orjson.dumps(_server_messages("trades.jsonl")[-1]), RECV)
    assert isinstance(aggregated, list) and aggregated[0].count == 3


def test_heartbeat_pong_text() -> None:
    heartbeat = json.loads((SAMPLES / "heartbeat.json").read_text())
    assert isinstance(parse_frame(heartbeat["server_replies_text"], RECV), Pong)
    assert isinstance(parse_frame(heartbeat["server_replies_text"].encode(), RECV), Pong)
    reply = parse_frame(heartbeat["client_sends_text"], RECV)  # the server never sends "ping"
    assert isinstance(reply, Rejected) and reply.reason.startswith("malformed JSON")


def test_rest_trade_bodies() -> None:
    for line in _lines("rest-market-trades.jsonl"):
        body = line["body"] if "body" in line else {"code": "0", "msg": "", "data": line["rows"]}
        trades = parse_rest_trades(orjson.dumps(body))
        assert len(trades) == len(body["data"]) > 0
        for trade, item in zip(trades, body["data"], strict=True):
            assert_trade_equals_item(trade, item, None)


def test_rest_candle_bodies() -> None:
    for line in _lines("rest-market-candles.jsonl"):
        candles = parse_rest_candles(orjson.dumps(line["body"]), "BTC-USDT-SWAP", "1m")
        check_candles(candles, line["body"]["data"])


def test_rest_error_envelope_raises_typed_error() -> None:
    with pytest.raises(OkxRestError) as caught:
        parse_rest_trades(b'{"code":"51001","msg":"Instrument ID does not exist.","data":[]}')
    assert caught.value.code == "51001" and "does not exist" in caught.value.msg
    with pytest.raises(OkxParseError, match="malformed JSON"):
        parse_rest_trades(b'{"code":"0",')
    with pytest.raises(OkxParseError, match="REST trade 0: px"):
        parse_rest_trades(orjson.dumps({"code": "0", "msg": "", "data": [{**TRADE_ITEM, "px": "NaN"}]}))


def _item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = dict(TRADE_ITEM)
    for key, value in changes.items():
        if value is _MISSING:
            item.pop(key)
        else:
            item[key] = value
    return item


_MISSING = object()

MALFORMED: list[tuple[bytes | str, str]] = [
    (b'{"arg":{"channel":"trades"', "malformed JSON"),
    (b"", "malformed JSON"),
    (b"\xff\xfe", "malformed JSON"),
    ("ping", "malformed JSON"),
    (b"[1, 2]", "not a JSON object but list"),
    (b'"pong"', "not a JSON object but str"),
    (b'{"foo": 1}', "neither event nor arg"),
    (b'{"arg": "trades", "data": []}', "arg 'trades' is not an object"),
    (b'{"arg": {"instId": "BTC-USDT"}, "data": []}', "arg.channel None is not a non-empty string"),
    (orjson.dumps({"arg": {"channel": "trades"}, "data": {"px": "1"}}), "trades push: data"),
    (_frame([]), "trades push with empty data"),
    (_frame(["x"]), "trades item 0: item 'x' is not an object"),
    (_frame([_item(px="NaN")]), "trades item 0: px 'NaN' is not a decimal string"),
    (_frame([_item(px="Infinity")]), "px 'Infinity' is not a decimal string"),
    (_frame([_item(px="-1.5")]), "px '-1.5' is not a decimal string"),
    (_frame([_item(px="0")]), "px '0' is zero"),
    (_frame([_item(px="0.000")]), "px '0.000' is zero"),
    (_frame([_item(px="1e5")]), "px '1e5' is not a decimal string"),
    (_frame([_item(px=" 1")]), "px ' 1' is not a decimal string"),
    (_frame([_item(px=83772.6)]), "px 83772.6 is not a decimal string"),
    (_frame([_item(px=_MISSING)]), "missing px"),
    (_frame([_item(sz="0")]), "sz '0' is zero"),
    (_frame([_item(sz="-0.1")]), "sz '-0.1' is not a decimal string"),
    (_frame([_item(side="hold")]), "unknown side 'hold'"),
    (_frame([_item(side=_MISSING)]), "unknown side None"),
    (_frame([_item(tradeId=_MISSING)]), "missing tradeId"),
    (_frame([_item(tradeId=12)]), "tradeId 12 is not an integer string"),
    (_frame([_item(tradeId="12a")]), "tradeId '12a' is not an integer string"),
    (_frame([_item(ts="-5")]), "ts '-5' is not an integer string"),
    (_frame([_item(ts=1790358565298)]), "ts 1790358565298 is not an integer string"),
    (_frame([_item(instId="")]), "instId '' is not a non-empty string"),
    (_frame([_item(count="0")]), "count '0' is below 1"),
    (_frame([_item(count=3)]), "count 3 is not an integer string"),
    (_frame([_item(seqId="81625379835")]), "seqId '81625379835' is not an integer"),
    (_frame([_item(seqId=True)]), "seqId True is not an integer"),
    (_frame([_item(source=1)]), "source 1 is not a string"),
    (_frame([TRADE_ITEM, _item(px="NaN")]), "trades item 1: px 'NaN'"),
    (_frame([_item(px="NaN")], "trades-all"), "trades-all item 0: px 'NaN'"),
    (b'{"event": 5}', "event 5 is not a string"),
    (b'{"event": "subscribe"}', "subscribe ack: arg None is not an object of strings"),
    (b'{"event": "subscribe", "arg": {"instId": "X"}}', "subscribe ack: arg has no channel"),
    (b'{"event": "error", "msg": "x"}', "missing code"),
    (b'{"event": "notice", "code": 64008}', "code 64008 is not a non-empty string"),
    (b'{"event": "error", "code": "60012", "connId": 7}', "connId 7 is not a string"),
]


@pytest.mark.parametrize(("raw", "reason"), MALFORMED)
def test_malformed_frames_are_rejected_with_a_specific_reason(raw: bytes | str, reason: str) -> None:
    result = parse_frame(raw, RECV)
    assert isinstance(result, Rejected)
    assert reason in result.reason
    assert result.raw == (raw.encode() if isinstance(raw, str) else raw)
    assert result.ts_recv == RECV


def test_bad_candle_rows_are_rejected() -> None:
    good = ["1789470120000", "77082.7", "77116.6", "77082.6", "77116.6", "1.5", "121697.2", "121697.2", "0"]
    for row, reason in [
        (good[:8], "is not an array of 9 strings"),
        ([*good[:8], "2"], "confirm '2'"),
        ([good[0], "NaN", *good[2:]], "candle o 'NaN'"),
        (["x", *good[1:]], "open time 'x'"),
        ([int(good[0]), *good[1:]], "non-string fields"),
    ]:
        push = parse_frame(_frame([row], "candle1m"), RECV)
        assert isinstance(push, OtherPush)
        result = parse_candle_push(push)
        assert isinstance(result, Rejected) and reason in result.reason
    books = parse_frame(_frame([{"asks": [], "bids": []}], "books"), RECV)
    assert isinstance(books, OtherPush)
    rejected = parse_candle_push(books)
    assert isinstance(rejected, Rejected) and "not a candle channel" in rejected.reason


RESULT_TYPES = (list, Rejected, SubscriptionAck, ErrorEvent, Notice, Pong, OtherEvent, OtherPush)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse_frame(raw, RECV), RESULT_TYPES)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(raw: str) -> None:
    assert isinstance(parse_frame(raw, RECV), RESULT_TYPES)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(TRADE_ITEM)), JSON, st.sampled_from(["trades", "trades-all"]))
def test_any_value_in_any_trade_field_gives_trades_or_a_reject(field: str, value: Any, channel: str) -> None:
    result = parse_frame(_frame([{**TRADE_ITEM, field: value}], channel), RECV)
    if isinstance(result, list):
        (trade,) = result
        assert trade.price > 0 and trade.size > 0 and trade.side in ("buy", "sell")
        assert trade.ts_event.tzinfo is UTC
    else:
        assert isinstance(result, Rejected) and result.reason
