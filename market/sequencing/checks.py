"""The checks a live trade must pass beyond the static bounds of ``market.plausibility``: against its
receive time and against the position of its instrument. Each returns the reason, or None."""

from __future__ import annotations

import json
from collections.abc import Sequence

from market.sequencing.lane import Fill
from market.sequencing.messages import FetchBackfill, Limits, Position
from market.types import Trade, ms_from_utc, utc_from_ms


def chained(after_id: int, trades: Sequence[Trade], last_id: int) -> bool:
    """Whether ascending ``trades`` cover every id in ``(after_id, last_id]`` by the count rule."""
    previous = after_id
    for trade in trades:
        if trade.trade_id - trade.count != previous:
            return False
        previous = trade.trade_id
    return previous == last_id


def trade_json(trade: Trade) -> bytes:
    """A trade's fields as JSON: the raw form of a refused trade that has no frame of its own."""
    return json.dumps(
        {
            "exchange": trade.exchange,
            "symbol": trade.symbol,
            "trade_id": trade.trade_id,
            "price": str(trade.price),
            "size": str(trade.size),
            "side": trade.side,
            "ts_event_ms": ms_from_utc(trade.ts_event),
            "count": trade.count,
            "origin": trade.origin,
        }
    ).encode()


def future_problem(trade: Trade, limits: Limits) -> str | None:
    """A trade stamped more than ``future_tolerance`` after its receive time."""
    if trade.ts_recv is None:
        return None
    ahead = trade.ts_event - trade.ts_recv
    if ahead > limits.future_tolerance:
        return (
            f"time {trade.ts_event.isoformat()} is {ahead.total_seconds():.3f} s after its receive "
            f"time (tolerance {limits.future_tolerance.total_seconds():g} s)"
        )
    return None


def push_time_problem(trade: Trade, limits: Limits) -> str | None:
    """A pushed trade stamped too far after or (``max_behind``) before its receive time."""
    problem = future_problem(trade, limits)
    if problem is None and trade.ts_recv is not None:
        behind = trade.ts_recv - trade.ts_event
        if behind > limits.max_behind:
            problem = (
                f"time {trade.ts_event.isoformat()} is {behind.total_seconds():.3f} s before its "
                f"receive time (limit {limits.max_behind.total_seconds():g} s for a push)"
            )
    return problem


def ahead_problem(trade: Trade, position: Position, limits: Limits) -> str | None:
    """A trade id implausibly far ahead of the position: more than ``max(id_slack, id_rate * s)`` where
    ``s`` runs from the position's trade time to this trade's receive time (no check when either is
    unknown)."""
    last_id, last_ms = position
    if last_ms is None or trade.ts_recv is None:
        return None
    elapsed = max(0.0, (ms_from_utc(trade.ts_recv) - last_ms) / 1000)
    limit = max(limits.id_slack, int(limits.id_rate * elapsed))
    if trade.trade_id - last_id > limit:
        return (
            f"trade id {trade.trade_id} is {trade.trade_id - last_id} ahead of the last trade {last_id} "
            f"(at most {limit} after {elapsed:.0f} s)"
        )
    return None


def hole_problem(trade: Trade, request: FetchBackfill, fill: Fill) -> str | None:
    """A backfilled trade outside the hole it was asked for: its ids ``(after_id, until_id)`` or its
    time bounds."""
    if not request.after_id < trade.trade_id < request.until_id:
        return f"outside the ids asked for ({request.after_id}, {request.until_id})"
    ms = ms_from_utc(trade.ts_event)
    if (fill.from_ms is None or ms >= fill.from_ms) and ms <= fill.to_ms:
        return None
    low = "" if fill.from_ms is None else utc_from_ms(fill.from_ms).isoformat()
    return (
        f"time {trade.ts_event.isoformat()} outside the hole's [{low}, {utc_from_ms(fill.to_ms).isoformat()}]"
    )
