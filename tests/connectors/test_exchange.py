"""The exchange interface: the factory, and OKX presented through it with its behaviour unchanged
(checked against the real OKX messages in tests/data/okx-samples and against what the OKX stream sends)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.binance.rest import BinanceRestClient
from connectors.exchange import (
    EXCHANGES,
    Acked,
    ExchangeSpec,
    Heartbeat,
    Ignored,
    Pong,
    Refused,
    ServerNotice,
    exchange,
)
from connectors.okx.connection import PROCESS_LIMITER, Outbox, StreamOptions
from connectors.okx.parser import parse_frame
from connectors.okx.rest import OkxRestClient
from connectors.okx.stream import TradeStream
from market.types import Rejected

SAMPLES = Path(__file__).parents[1] / "data" / "okx-samples"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_factory_knows_every_exchange_by_name() -> None:
    for name in EXCHANGES:
        spec = exchange(name)
        assert isinstance(spec, ExchangeSpec) and spec.name == name
    with pytest.raises(ValueError, match="unknown exchange 'kraken'"):
        exchange("kraken")


def test_rest_clients_come_from_the_spec() -> None:
    assert isinstance(exchange("okx").rest_client("http://127.0.0.1:1", 1.0, 0, 0.1), OkxRestClient)
    assert isinstance(exchange("binance").rest_client("http://127.0.0.1:1", 1.0, 0, 0.1), BinanceRestClient)


def test_connections_respect_the_exchange_cap() -> None:
    okx = exchange("okx")
    insts = [f"C{i}-USDT" for i in range(45)]
    assert okx.connections(insts, 20) == [tuple(insts[:20]), tuple(insts[20:40]), tuple(insts[40:])]
    binance = exchange("binance")
    many = [f"C{i}-USDT" for i in range(2050)]
    assert [len(c) for c in binance.connections(many, 5000)] == [1024, 1024, 2]


def test_binance_connections_are_renewed_before_the_24_hour_cut() -> None:
    heartbeat = exchange("binance").heartbeat
    assert heartbeat.max_age == timedelta(hours=24) and heartbeat.renew_after == timedelta(hours=23)
    assert not heartbeat.renewal_due(timedelta(hours=22, minutes=59))
    assert heartbeat.renewal_due(timedelta(hours=23))
    assert not exchange("okx").heartbeat.renewal_due(timedelta(days=30))


def test_heartbeat_rules_are_consistent() -> None:
    with pytest.raises(ValueError, match="below idle_close"):
        Heartbeat(client_ping="ping", ping_after=30.0, pong_timeout=5.0, idle_close=30.0)
    with pytest.raises(ValueError, match="renewed before"):
        Heartbeat(
            client_ping=None, ping_after=1.0, pong_timeout=1.0, max_age=exchange("binance").heartbeat.max_age
        )


# ----------------------------------------------------------------------------- OKX, unchanged


def test_okx_heartbeat_and_limits_are_the_streams() -> None:
    okx, options = exchange("okx"), StreamOptions()
    assert okx.heartbeat.client_ping == "ping"
    assert (okx.heartbeat.ping_after, okx.heartbeat.pong_timeout) == (
        options.ping_interval,
        options.pong_timeout,
    )
    assert okx.heartbeat.max_age is None
    assert (okx.limits.connections, okx.limits.connections_window) == (
        PROCESS_LIMITER.rate,
        PROCESS_LIMITER.per,
    )
    assert okx.connect_url(okx.ws_url, ["BTC-USDT"]) == okx.ws_url == "wss://ws.okx.com:8443/ws/v5/public"


def test_okx_subscription_is_what_the_stream_sends() -> None:
    sent: list[str] = []

    class Socket:
        async def send(self, message: str) -> None:
            sent.append(message)

    insts = ["BTC-USDT", "ETH-USDT"]
    stream = TradeStream("c0", "ws://127.0.0.1:1", "http://127.0.0.1:1", insts, StreamOptions(), Outbox(10))
    requests = asyncio.run(stream.subscriptions.send(Socket(), insts))
    (subscription,) = exchange("okx").subscriptions(insts, 1)
    assert sent == [
        '{"id":"s1","op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"trades","instId":"ETH-USDT"}]}'
    ]
    assert ({subscription.request_id: subscription.symbols}, [subscription.message]) == (requests, sent)


def _server_messages() -> list[Any]:
    out = []
    for path in sorted(SAMPLES.glob("*.jsonl")):
        if path.name.startswith("rest-"):
            continue
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("dir", "recv") == "recv" and "msg" in row:
                out.append(row["msg"])
    out.append(json.loads((SAMPLES / "heartbeat.json").read_text())["server_replies_text"])
    return out


def _expected(msg: Any) -> object:
    """The neutral meaning of one OKX server message, read off the message itself."""
    if msg == "pong":
        return Pong()
    event = msg.get("event")
    if event == "subscribe" and msg["arg"]["channel"] == "trades":
        return Acked(msg.get("id"), msg["arg"]["instId"])
    if event == "error":
        return Refused(msg.get("id"), msg["code"], msg.get("msg", ""))
    if event == "notice":
        return ServerNotice(msg["code"], msg.get("msg", ""), msg["code"] == "64008")
    if event is not None:
        return Ignored
    return "trades" if msg["arg"]["channel"] in ("trades", "trades-all") else Ignored


def test_okx_frames_mean_through_the_interface_what_they_meant() -> None:
    parse = exchange("okx").parser(["BTC-USDT"])
    messages = _server_messages()
    kinds = set()
    for msg in messages:
        raw = msg if isinstance(msg, str) else json.dumps(msg)
        got, expected = parse(raw, NOW), _expected(msg)
        kinds.add(type(got).__name__)
        if expected == "trades":
            assert got == parse_frame(raw, NOW) and isinstance(got, list) and got
        elif expected is Ignored:
            assert isinstance(got, Ignored), msg
        else:
            assert got == expected, msg
    assert len(messages) > 100
    assert kinds == {"list", "Acked", "Refused", "ServerNotice", "Pong", "Ignored"}


def test_okx_rejects_pass_through() -> None:
    parse = exchange("okx").parser([])
    for raw in (b"{", b"[]", b'{"arg":{"channel":"trades"},"data":[{"px":"1"}]}'):
        got = parse(raw, NOW)
        assert isinstance(got, Rejected) and got == parse_frame(raw, NOW)


# ----------------------------------------------------------------------------- every exchange


@pytest.mark.parametrize("name", EXCHANGES)
@given(raw=st.binary(max_size=80) | st.text(max_size=80))
def test_every_parser_never_raises(name: str, raw: bytes | str) -> None:
    result = exchange(name).parser(["BTC-USDT"])(raw, NOW)
    assert isinstance(result, list | Rejected | Acked | Refused | ServerNotice | Pong | Ignored)


@pytest.mark.parametrize("name", EXCHANGES)
def test_every_exchange_subscribes_each_instrument_once_with_fresh_ids(name: str) -> None:
    spec = exchange(name)
    insts = [f"C{i}-USDT" for i in range(450)]
    first = spec.subscriptions(insts, 1)
    later = spec.subscriptions(insts, 1 + len(first))
    assert [s for sub in first for s in sub.symbols] == insts
    ids = [sub.request_id for sub in first + later]
    assert len(set(ids)) == len(ids)
    assert all(json.loads(sub.message) for sub in first)
    assert spec.connect_url(spec.ws_url, insts).startswith(spec.ws_url)
    assert spec.limits.min_connect_interval > 0
