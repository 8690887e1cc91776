"""Rows of ``collector_health`` for the dashboard tests, written as the live flow writes them.

The table comes from migration 0011; on a database migrated before it, ``ensure_table`` creates it with
the same definition, so these tests pass before and after that migration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.redis_codec import encode, payload_of
from market.health import CollectorHealth

DDL = """
CREATE TABLE collector_health (
    collector text PRIMARY KEY,
    time timestamptz NOT NULL,
    status text NOT NULL,
    is_healthy boolean NOT NULL,
    status_since timestamptz,
    last_error text,
    payload jsonb NOT NULL
)
"""
UPSERT = """
INSERT INTO collector_health (collector, time, status, is_healthy, status_since, last_error, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (collector) DO UPDATE SET time = EXCLUDED.time, status = EXCLUDED.status,
    is_healthy = EXCLUDED.is_healthy, status_since = EXCLUDED.status_since,
    last_error = EXCLUDED.last_error, payload = EXCLUDED.payload
"""


def ensure_table(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT to_regclass('collector_health') IS NULL").fetchone() == (True,):
        conn.execute(DDL)


def put_collector(
    url: str,
    collector: str,
    status: str,
    time: datetime,
    status_since: datetime | None = None,
    last_error: str | None = None,
    **counters: Any,
) -> None:
    """Upsert one collector's latest snapshot (its payload is the one published on Redis)."""
    health = CollectorHealth(
        collector,
        time,
        status,  # type: ignore[arg-type]
        True,
        last_error=last_error,
        is_healthy=status == "running",
        **counters,
    )
    payload = {**payload_of(health)[2], "status_since": status_since}
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_table(conn)
        conn.execute(
            UPSERT,
            (
                collector,
                time,
                status,
                status == "running",
                status_since,
                last_error,
                Jsonb(payload, dumps=lambda p: encode(p).decode()),
            ),
        )
