"""The simulator's outgoing OKX v5 frames, shaped like the real messages in tests/data/okx-samples.

Key sets and orders follow live captures: acks ``{event,arg,connId}`` (+ ``id`` first when the request had
one; no ``connId`` in the 2021-22 ``legacy`` shape), errors ``{event,msg,code,connId}``, ``trades`` items
``instId,tradeId,px,sz,side,ts,count,source,seqId`` (2026) or ``instId,tradeId,px,sz,side,ts`` (legacy),
``trades-all`` items ``instId,tradeId,px,sz,side,source,ts``. All numbers are strings except ``seqId``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from market.types import Trade, ms_from_utc

NOTICE_MSG = "The connection will soon be closed for a service upgrade. Please reconnect."
IDLE_CLOSE_CODE = 4004
IDLE_CLOSE_REASON = "No data received in 30s"
BUFFER_FULL_CODE = 4005
BUFFER_FULL_REASON = "Buffer is full, cannot write data"


def new_conn_id() -> str:
    """An 8-hex-character connection id, constant for the life of a connection."""
    return secrets.token_hex(4)


def dumps(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def number(value: Decimal) -> str:
    """OKX's decimal string (plain notation, never an exponent)."""
    return format(value, "f")


def ack(op: str, arg: dict[str, str], conn_id: str | None, request_id: str | None) -> str:
    message: dict[str, Any] = {}
    if request_id is not None:
        message["id"] = request_id
    message["event"] = op
    message["arg"] = arg
    if conn_id is not None:
        message["connId"] = conn_id
    return dumps(message)


def error(code: str, msg: str, conn_id: str | None, request_id: str | None) -> str:
    message: dict[str, Any] = {}
    if request_id is not None:
        message["id"] = request_id
    message["event"] = "error"
    message["msg"] = msg
    message["code"] = code
    if conn_id is not None:
        message["connId"] = conn_id
    return dumps(message)


def notice(conn_id: str | None) -> str:
    message: dict[str, Any] = {"event": "notice", "msg": NOTICE_MSG, "code": "64008"}
    if conn_id is not None:
        message["connId"] = conn_id
    return dumps(message)


def wrong_channel_msg(op: str, channel: str, inst_id: str) -> str:
    return (
        f"{op.capitalize()} failed, wrong URL or channel:{channel},instId:{inst_id} doesn't exist. "
        "Please use the correct URL, channel and parameters referring to API document."
    )


@dataclass(frozen=True, slots=True)
class TradesPush:
    """One ``trades`` push: ``count`` consecutive fills of one taker at one price, named by the last id."""

    inst_id: str
    trade_id: int
    price: Decimal
    size: Decimal
    side: str
    ts_ms: int
    count: int
    source: str
    seq_id: int


def trades_push(push: TradesPush, legacy: bool) -> str:
    item: dict[str, Any] = {
        "instId": push.inst_id,
        "tradeId": str(push.trade_id),
        "px": number(push.price),
        "sz": number(push.size),
        "side": push.side,
        "ts": str(push.ts_ms),
    }
    if not legacy:
        item["count"] = str(push.count)
        item["source"] = push.source
        item["seqId"] = push.seq_id
    return dumps({"arg": {"channel": "trades", "instId": push.inst_id}, "data": [item]})


def trades_all_push(trade: Trade, ts_ms: int, legacy: bool) -> str:
    item: dict[str, Any] = {
        "instId": trade.symbol,
        "tradeId": str(trade.trade_id),
        "px": number(trade.price),
        "sz": number(trade.size),
        "side": trade.side,
    }
    if not legacy:
        item["source"] = trade.source or "0"
    item["ts"] = str(ts_ms)
    return dumps({"arg": {"channel": "trades-all", "instId": trade.symbol}, "data": [item]})


def candle_push(channel: str, inst_id: str, row: list[str]) -> str:
    return dumps({"arg": {"channel": channel, "instId": inst_id}, "data": [row]})


def rest_trade(trade: Trade, offset_ms: int) -> dict[str, str]:
    """A REST trade row, key order of the live 2025 ``GET /api/v5/market/trades`` capture."""
    return {
        "instId": trade.symbol,
        "side": trade.side,
        "sz": number(trade.size),
        "px": number(trade.price),
        "tradeId": str(trade.trade_id),
        "ts": str(ms_from_utc(trade.ts_event) + offset_ms),
    }


def rest_envelope(data: list[Any], code: str = "0", msg: str = "") -> bytes:
    return orjson.dumps({"code": code, "msg": msg, "data": data})
