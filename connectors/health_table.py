"""Collector health in the database: the latest snapshot of each collector in ``collector_health``.

The live flow upserts every ``CollectorHealth`` snapshot (one row per collector), so that what has no
Redis (the dashboard on the database alone, the status line of ``tcp.py up``) still sees each
collector's state and its cause. A snapshot is a view of now, not a record: when the database is
unreachable it is dropped (counted and logged once per outage), never spooled, and the next one
replaces it. Readers treat a row older than ``HEALTH_EXPIRES_AFTER`` as not current.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg.types.json import Jsonb

from connectors.redis_codec import decode, encode, payload_of
from market.health import HEALTH_EXPIRES_AFTER, CollectorHealth

__all__ = ["HEALTH_EXPIRES_AFTER", "HealthTableSink", "HealthTableWriter", "latest_health"]

log = logging.getLogger(__name__)

_UPSERT = """
INSERT INTO collector_health (collector, time, status, is_healthy, status_since, last_error, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (collector) DO UPDATE SET
    time = EXCLUDED.time, status = EXCLUDED.status, is_healthy = EXCLUDED.is_healthy,
    status_since = EXCLUDED.status_since, last_error = EXCLUDED.last_error, payload = EXCLUDED.payload
WHERE collector_health.time <= EXCLUDED.time
"""

_LATEST = "SELECT payload::text FROM collector_health WHERE time > %s ORDER BY collector"


class HealthTableWriter:
    """Upserts snapshots with its own connection; a failure drops the batch and retries on the next."""

    def __init__(self, url: str, connect_timeout: float = 3.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.dropped = 0
        self._conn: psycopg.Connection | None = None
        self._failing = False

    def write(self, snapshots: Sequence[CollectorHealth]) -> None:
        if not snapshots:
            return
        try:
            if self._conn is None or self._conn.closed:
                timeout = int(max(1, self.connect_timeout))
                self._conn = psycopg.connect(self.url, connect_timeout=timeout, autocommit=True)
            with self._conn.cursor() as cur:
                cur.executemany(_UPSERT, [_row(h) for h in snapshots])
        except psycopg.Error as error:
            self.dropped += len(snapshots)
            self.close()
            if not self._failing:
                log.warning("collector health not stored (%s); the next snapshot retries", error)
            self._failing = True
            return
        if self._failing:
            log.info("collector health stored again (%d snapshot(s) dropped meanwhile)", self.dropped)
        self._failing = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _row(h: CollectorHealth) -> tuple[object, ...]:
    _, _, payload = payload_of(h)
    document = Jsonb(payload, dumps=lambda obj: encode(obj).decode())  # exactly the published JSON
    return (h.collector, h.time, h.status, h.is_healthy, h.status_since, h.last_error, document)


def latest_health(conn: psycopg.Connection, now: datetime) -> list[dict[str, object]]:
    """The current snapshot of each collector (those younger than ``HEALTH_EXPIRES_AFTER``), decoded
    as the Redis payload is (times as aware datetimes)."""
    rows = conn.execute(_LATEST, (now - HEALTH_EXPIRES_AFTER,)).fetchall()
    return [decode(row[0]) for row in rows]


class _HealthPartition(StatelessSinkPartition[CollectorHealth]):
    def __init__(self, writer: HealthTableWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[CollectorHealth]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.close()


class HealthTableSink(DynamicSink[CollectorHealth]):
    """The Bytewax adapter: one writer (one connection) per worker."""

    def __init__(self, url: str, connect_timeout: float = 3.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _HealthPartition:
        return _HealthPartition(HealthTableWriter(self.url, self.connect_timeout))
