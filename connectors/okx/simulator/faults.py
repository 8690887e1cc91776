"""Fault injection: what each connection does to its stream of data pushes (pure, per connection).

Counting is per connection and over data pushes only (not acks, errors or pongs). Time-based faults
(``drop_every_seconds``, ``notice_then_close``) are timers owned by the websocket session; this module
decides the push-count-based ones and builds hostile frames (:func:`poisoned`) and REST rows
(:func:`poisoned_rows`): what a compromised or broken feed could send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

HOUR_MS = 3_600_000
POISON_KINDS = (
    "future",
    "behind",
    "id-ahead",
    "foreign",
    "huge-price",
    "big-count",
    "many-trades",
    "big-frame",
    "giant-frame",
)
REST_POISON_KINDS = ("id", "time")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """All faults off by default. Every option applies to each connection independently."""

    drop_every_seconds: float | None = None  # abort the TCP connection (no close frame) every N s
    drop_after_messages: int | None = None  # abort after the N-th data push
    notice_then_close: float | None = None  # 64008 notice at the first data push, close S s later
    malformed_every: int | None = None  # after every N-th push, an extra malformed frame
    stall_after_messages: int | None = None  # after the N-th push, send nothing for stall_seconds
    stall_seconds: float = 0.0
    duplicate_every: int | None = None  # every N-th push is sent twice
    reorder_every: int | None = None  # every N-th push is held and sent after the next one
    poison_every: int | None = None  # after every N-th push, a hostile frame of the next ``poison`` kind
    poison: tuple[str, ...] = ()
    poison_first: str | None = None  # a hostile frame of this kind before each subscription's first push
    rest_poison: str | None = None  # history-trades answers carry a row outside the ids asked ("id") or
    #                                 their newest row stamped an hour early ("time")

    def __post_init__(self) -> None:
        for name in (
            "drop_after_messages",
            "malformed_every",
            "stall_after_messages",
            "duplicate_every",
            "reorder_every",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("drop_every_seconds", "notice_then_close"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.stall_after_messages is not None and self.stall_seconds <= 0:
            raise ValueError("stall_after_messages needs stall_seconds > 0")
        if self.poison_every is not None and (self.poison_every < 1 or not self.poison):
            raise ValueError("poison_every needs a value >= 1 and at least one poison kind")
        for kind in (*self.poison, *([self.poison_first] if self.poison_first else [])):
            if kind not in POISON_KINDS:
                raise ValueError(f"unknown poison kind {kind!r}; one of {', '.join(POISON_KINDS)}")
        if self.rest_poison is not None and self.rest_poison not in REST_POISON_KINDS:
            kinds = ", ".join(REST_POISON_KINDS)
            raise ValueError(f"unknown REST poison {self.rest_poison!r}; one of {kinds}")


def malformed(frame: str, variant: int) -> str:
    """A broken copy of ``frame``; variants cycle through the kinds of damage a parser must survive."""
    kind = variant % 4
    if kind == 1 and '"px":"' in frame:
        return frame.replace('"px":"', '"px":"-', 1)  # negative price
    if kind == 2 and '"side":"' in frame:
        return frame.replace('"side":"', '"side":"x', 1)  # unknown side
    if kind == 3:
        return "\x00not json"
    return frame[: max(1, len(frame) // 2)]  # truncated JSON


def poisoned(frame: str, kind: str) -> str:
    """A hostile ``trades`` frame built from the real push ``frame`` (its first trade)."""
    message = orjson.loads(frame)
    item: dict[str, Any] = dict(message["data"][0])
    following = str(int(item["tradeId"]) + 1)  # the next real id: only the poisoned field is wrong
    data = [item]
    pad = 0
    if kind == "future":
        item.update(tradeId=following, ts=str(int(item["ts"]) + HOUR_MS))
    elif kind == "behind":
        item.update(tradeId=following, ts=str(int(item["ts"]) - HOUR_MS))
    elif kind == "id-ahead":
        item.update(tradeId=str(int(item["tradeId"]) + 10**12))
    elif kind == "foreign":
        item.update(instId="POISON-USDT")
        message["arg"] = {**message["arg"], "instId": "POISON-USDT"}
    elif kind == "huge-price":
        item.update(tradeId=following, px="9" * 400)
    elif kind == "big-count":
        item.update(tradeId=following, count="4294967296")
    elif kind == "many-trades":
        item.update(tradeId=following)
        data = [item] * 1001
    else:  # big-frame (2 MiB), giant-frame (10 MiB)
        pad = 2 * 1024 * 1024 if kind == "big-frame" else 10 * 1024 * 1024
    message["data"] = data
    if pad:
        message["pad"] = "x" * pad
    return orjson.dumps(message).decode()


def poisoned_rows(
    rows: list[dict[str, str]], kind: str, after: int | None
) -> tuple[list[dict[str, str]], str]:
    """History-trades rows (newest first) with one hostile row, and what was done (for the log)."""
    if not rows:
        return rows, ""
    if kind == "id":  # newer than every id asked for
        extra = {**rows[0], "tradeId": str((after or int(rows[0]["tradeId"])) + 10**9)}
        return [extra, *rows], f"extra row {extra['tradeId']} outside the ids asked for"
    newest = {**rows[0], "ts": str(int(rows[0]["ts"]) - HOUR_MS)}
    return [newest, *rows[1:]], f"trade {newest['tradeId']} stamped an hour early"


@dataclass(slots=True)
class PushPlan:
    """What to send for one push: frames in order, then optionally stall or drop the connection."""

    frames: list[str]
    stall_seconds: float = 0.0
    drop: bool = False
    events: list[str] = field(default_factory=list)


class FaultState:
    """Per-connection counters applying a :class:`FaultConfig` to the push stream."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.pushes = 0
        self.held: str | None = None
        self.malformed_sent = 0

    def on_push(self, frame: str) -> PushPlan:
        config = self.config
        self.pushes += 1
        n = self.pushes
        plan = PushPlan(frames=[frame])
        if config.reorder_every is not None:
            if self.held is not None:
                plan.frames.append(self.held)
                self.held = None
            elif n % config.reorder_every == 0:
                self.held = frame
                plan.frames = []
                plan.events.append(f"reorder: push {n} held back until after the next push")
        if config.duplicate_every is not None and n % config.duplicate_every == 0 and plan.frames:
            plan.frames.insert(0, plan.frames[0])
            plan.events.append(f"duplicate: push {n} sent twice")
        if config.poison_every is not None and n % config.poison_every == 0:
            kind = config.poison[(n // config.poison_every - 1) % len(config.poison)]
            plan.frames.append(poisoned(frame, kind))
            plan.events.append(f"poison: {kind} frame after push {n}")
        if config.malformed_every is not None and n % config.malformed_every == 0:
            plan.frames.append(malformed(frame, self.malformed_sent))
            self.malformed_sent += 1
            plan.events.append(f"malformed: extra broken frame after push {n}")
        if config.stall_after_messages is not None and n == config.stall_after_messages:
            plan.stall_seconds = config.stall_seconds
            plan.events.append(f"stall: nothing sent for {config.stall_seconds:g} s after push {n}")
        if config.drop_after_messages is not None and n == config.drop_after_messages:
            plan.drop = True
            plan.events.append(f"drop: connection aborted after push {n}")
        return plan
