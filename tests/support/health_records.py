"""Collector health records for the tests of the health fields: a ``CollectorHealth`` with every field
of the platform's reference set, and the ``collector_health`` row that stores it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connectors.redis_codec import encode, payload_of
from market.health import CollectorHealth, assess_health

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def full_record(**changes: Any) -> CollectorHealth:
    """A checked record of a running collector with every field of the platform's reference set."""
    fields: dict[str, Any] = dict(
        collector="okx:public-0",
        time=T0,
        status="running",
        should_be_running=True,
        status_since=T0 - timedelta(minutes=1),
        messages_received=1000,
        messages_processed=990,
        errors=1,
        restarts=2,
        uptime_seconds=90_061.0,
        reconnect_attempts=3,
        last_message_time=T0 - timedelta(seconds=2),
        last_error="ConnectionClosedError: no close frame received or sent",
        symbols=("BTC-USDT", "ETH-USDT"),
        data_types=("trades",),
        auto_restart=True,
        health_check_interval_seconds=5.0,
    )
    return assess_health(CollectorHealth(**{**fields, **changes}))


def stored_row(h: CollectorHealth) -> dict[str, Any]:
    """The ``collector_health`` row as the database returns it (payload: the jsonb as a dict)."""
    return {
        "collector": h.collector,
        "time": h.time,
        "status": h.status,
        "is_healthy": h.is_healthy,
        "status_since": h.status_since,
        "last_error": h.last_error,
        "payload": orjson.loads(encode(payload_of(h)[2])),
    }
