"""The session file format: how a recorded live OKX session is written and read back.

The inputs of a partition's :class:`market.sequencing.Sequencer` (``Start``, ``Subscribed``, ``Refused``,
``Push``, ``Heard``, ``Unreadable``, ``Latest``, ``Backfilled``, ``Tick``, ``Disconnected``) carry their
receive times, and the sequencer and the candle step are functions of them alone; so
a recording (:mod:`connectors.okx.recording`) replayed by :mod:`connectors.okx.session` gives the same
items, and the same dataflow turns them into the same rows (docs/reliability.md, "Recorded sessions").

Format version 1: gzip-compressed JSON lines, ``<sessions>/<session>/<partition>.<n:05d>.jsonl.gz``. Every
file starts with a header line::

    {"format": "tcp-okx-session", "version": 1, "session": "20250101T120000000000Z-4242",
     "partition": "BTC-USDT", "file": 0, "exchange": "okx", "instruments": ["BTC-USDT"],
     "positions": {"BTC-USDT": [123, 1735732800000]}, "end_ids": {}, "limits": {...},
     "push_source": "okx-ws", "rest_source": "okx-rest", "flow": {...}}

(the sequencer's construction; ``limits`` with durations in microseconds; ``flow``: the dataflow
settings the session ran with). Then one line per input, ``e`` its kind and ``at`` its receive time in
epoch microseconds: ``start``, ``tick``, ``heard``; ``subscribed`` and ``refused`` (``symbol``,
``reason``); ``disconnected`` (``reason``); ``push`` (``frame``: the websocket frame as received);
``unreadable`` (``reason``, ``size``, ``raw``: the frame's first ``limits.raw_limit`` bytes, all a
reject keeps); ``latest`` (``symbol``, ``error``, ``trades``) and ``backfilled`` (the request's
``symbol``, ``after_id``, ``until_id``, then ``error``, ``trades``, ``outside``), whose trades are OKX
REST items grouped in runs of one receive time and origin (``{"at", "origin", "data": [items]}``).
Bytes are ``{"text": ...}`` when they are UTF-8, else ``{"b64": ...}``. When the dataflow stops taking
items, ``{"e": "end", "taken": n}`` says how many it took, so a replay stops where the live run did.
A file cut short (a killed writer) reads up to its last complete line.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from connectors.okx.parser import parse_frame, parse_rest_trades
from market.sequencing import (
    Backfilled,
    Disconnected,
    Event,
    FetchBackfill,
    Heard,
    Latest,
    Limits,
    Position,
    Push,
    Refused,
    Sequencer,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.types import EPOCH, Trade, ms_from_utc

FORMAT = "tcp-okx-session"
VERSION = 1
SUFFIX = ".jsonl.gz"
_US = timedelta(microseconds=1)
_DURATIONS = frozenset(f.name for f in fields(Limits) if str(f.type).startswith("timedelta"))
"""The limits written as microseconds."""


class SessionError(Exception):
    """A session file that cannot be replayed; the message names the file and the problem."""


@dataclass(frozen=True)
class SessionHeader:
    """What a partition's sequencer was built from, and the dataflow settings the session ran with."""

    session: str
    partition: str
    exchange: str
    instruments: tuple[str, ...]
    positions: Mapping[str, Position]
    end_ids: Mapping[str, int]
    limits: Limits
    push_source: str
    rest_source: str
    flow: Mapping[str, Any]

    def sequencer(self) -> Sequencer:
        """A fresh sequencer constructed as the recorded one was."""
        return Sequencer(
            self.exchange,
            self.instruments,
            self.limits,
            positions=dict(self.positions),
            end_ids=dict(self.end_ids),
            push_source=self.push_source,
            rest_source=self.rest_source,
        )

    def line(self, file: int) -> dict[str, Any]:
        """The header line of the partition's file number ``file``."""
        limits = {f.name: getattr(self.limits, f.name) for f in fields(Limits)}
        return {
            "format": FORMAT,
            "version": VERSION,
            "session": self.session,
            "partition": self.partition,
            "file": file,
            "exchange": self.exchange,
            "instruments": list(self.instruments),
            "positions": {symbol: list(position) for symbol, position in self.positions.items()},
            "end_ids": dict(self.end_ids),
            "limits": {k: v // _US if isinstance(v, timedelta) else v for k, v in limits.items()},
            "push_source": self.push_source,
            "rest_source": self.rest_source,
            "flow": dict(self.flow),
        }

    @classmethod
    def parse(cls, line: Any, where: str) -> tuple[SessionHeader, int]:
        """The header of a file and the file's number; raises :class:`SessionError` if it is none."""
        if not isinstance(line, dict) or line.get("format") != FORMAT:
            raise SessionError(f"{where}: not a session file (no {FORMAT!r} header)")
        if line.get("version") != VERSION:
            raise SessionError(
                f"{where}: session format version {line.get('version')!r} is not supported "
                f"(this build reads version {VERSION})"
            )
        try:
            limits: dict[str, Any] = {
                name: timedelta(microseconds=value) if name in _DURATIONS and value is not None else value
                for name, value in line["limits"].items()
            }
            header = cls(
                line["session"],
                line["partition"],
                line["exchange"],
                tuple(line["instruments"]),
                {
                    symbol: (int(p[0]), None if p[1] is None else int(p[1]))
                    for symbol, p in line["positions"].items()
                },
                {symbol: int(end) for symbol, end in line["end_ids"].items()},
                Limits(**limits),
                line["push_source"],
                line["rest_source"],
                line["flow"],
            )
            return header, int(line["file"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise SessionError(f"{where}: bad header ({type(error).__name__}: {error})") from None


# --------------------------------------------------------------------------------------------- events


def _us(at: datetime) -> int:
    return (at - EPOCH) // _US


def _time(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _blob(raw: bytes) -> dict[str, str]:
    try:
        return {"text": raw.decode()}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(raw).decode()}


def _bytes(blob: Mapping[str, str]) -> bytes:
    return blob["text"].encode() if "text" in blob else base64.b64decode(blob["b64"])


def _okx_item(trade: Trade) -> dict[str, Any]:
    """A trade as OKX's REST API gives it."""
    item: dict[str, Any] = {
        "instId": trade.symbol,
        "tradeId": str(trade.trade_id),
        "px": format(trade.price, "f"),
        "sz": format(trade.size, "f"),
        "side": trade.side,
        "ts": str(ms_from_utc(trade.ts_event)),
        "count": str(trade.count),
    }
    if trade.seq_id is not None:
        item["seqId"] = trade.seq_id
    if trade.source is not None:
        item["source"] = trade.source
    return item


def _runs(trades: Sequence[Trade]) -> list[dict[str, Any]]:
    """REST trades as runs of one receive time and origin (a REST page shares its receive time)."""
    runs: list[dict[str, Any]] = []
    for trade in trades:
        at = None if trade.ts_recv is None else _us(trade.ts_recv)
        if not runs or runs[-1]["at"] != at or runs[-1]["origin"] != trade.origin:
            runs.append({"at": at, "origin": trade.origin, "data": []})
        runs[-1]["data"].append(_okx_item(trade))
    return runs


def _trades(runs: Sequence[Mapping[str, Any]]) -> tuple[Trade, ...]:
    """The trades of :func:`_runs`, read back by OKX's REST parser."""
    out: list[Trade] = []
    for run in runs:
        at = None if run["at"] is None else _time(run["at"])
        body = orjson.dumps({"code": "0", "data": run["data"]})
        out.extend(replace(trade, origin=run["origin"]) for trade in parse_rest_trades(body, at))
    return tuple(out)


def encode_event(event: Event, raw_limit: int) -> dict[str, Any]:
    """One input as a JSON object (``raw_limit``: bytes of an unreadable frame kept)."""
    match event:
        case Start(now):
            return {"e": "start", "at": _us(now)}
        case Subscribed(symbol, now):
            return {"e": "subscribed", "at": _us(now), "symbol": symbol}
        case Refused(symbol, now, reason):
            return {"e": "refused", "at": _us(now), "symbol": symbol, "reason": reason}
        case Push(_, raw, received):
            return {"e": "push", "at": _us(received), "frame": _blob(raw)}
        case Heard(received):
            return {"e": "heard", "at": _us(received)}
        case Unreadable(raw, reason, received):
            kept = _blob(raw[:raw_limit])
            return {"e": "unreadable", "at": _us(received), "reason": reason, "size": len(raw), "raw": kept}
        case Latest(symbol, trades, error, received):
            return {
                "e": "latest",
                "at": _us(received),
                "symbol": symbol,
                "error": error,
                "trades": _runs(trades),
            }
        case Backfilled(request, trades, outside, error, received):
            return {
                "e": "backfilled",
                "at": _us(received),
                "symbol": request.symbol,
                "after_id": request.after_id,
                "until_id": request.until_id,
                "error": error,
                "trades": _runs(trades),
                "outside": _runs(outside),
            }
        case Tick(now):
            return {"e": "tick", "at": _us(now)}
        case Disconnected(now, reason):
            return {"e": "disconnected", "at": _us(now), "reason": reason}
    raise TypeError(f"not a sequencer input: {event!r}")


def decode_event(line: Mapping[str, Any]) -> Event:
    """The input a line records; frames are parsed again by the same parser as live. Raises KeyError,
    TypeError or ValueError on a malformed line."""
    kind, at = line["e"], _time(line["at"])
    if kind == "push":
        raw = _bytes(line["frame"])
        parsed = parse_frame(raw, at)
        if not isinstance(parsed, list):
            raise ValueError(f"the recorded push no longer parses as trades: {parsed!r}"[:300])
        return Push(tuple(parsed), raw, at)
    if kind == "heard":
        return Heard(at)
    if kind == "tick":
        return Tick(at)
    if kind == "latest":
        return Latest(line["symbol"], _trades(line["trades"]), line["error"], at)
    if kind == "backfilled":
        request = FetchBackfill(line["symbol"], int(line["after_id"]), int(line["until_id"]))
        return Backfilled(request, _trades(line["trades"]), _trades(line["outside"]), line["error"], at)
    if kind == "unreadable":
        kept = _bytes(line["raw"])
        return Unreadable(kept + bytes(int(line["size"]) - len(kept)), line["reason"], at)
    if kind == "subscribed":
        return Subscribed(line["symbol"], at)
    if kind == "refused":
        return Refused(line["symbol"], at, line["reason"])
    if kind == "disconnected":
        return Disconnected(at, line["reason"])
    if kind == "start":
        return Start(at)
    raise ValueError(f"unknown input kind {kind!r}")


# --------------------------------------------------------------------------------------------- reading


class SessionLines:
    """The complete lines of one session file, decoded, with their numbers. A file that ends early (a
    killed writer, a damaged tail) ends at its last complete line, and ``ended_early`` says why."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ended_early: str | None = None

    def __iter__(self) -> Generator[tuple[int, Any], None, None]:
        inflate = zlib.decompressobj(wbits=31)  # gzip
        pending, number = b"", 0
        with self.path.open("rb") as handle:
            while not inflate.eof and (chunk := handle.read(1 << 20)):
                try:
                    pending += inflate.decompress(chunk)
                except zlib.error as error:
                    self.ended_early = f"damaged after line {number} ({error})"
                    return
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    number += 1
                    try:
                        yield number, orjson.loads(line)
                    except orjson.JSONDecodeError as error:
                        raise SessionError(f"{self.path}:{number}: not a JSON line ({error})") from None
        if not inflate.eof:
            self.ended_early = f"cut short after line {number}"
