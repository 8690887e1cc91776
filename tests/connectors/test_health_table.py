"""The ``collector_health`` table on a real PostgreSQL: the latest snapshot per collector, never an older
one over a newer one, expired after 30 s for readers, and a database outage drops snapshots (never
blocks, never raises) and recovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from app.embedded_postgres import EmbeddedPostgres
from connectors.health_table import HealthTableWriter, latest_health
from connectors.okx.events import ConnectionHealth, ConnectionState
from flows.health import health_step
from market.health import CollectorHealth, HealthRules, assess_health
from sql.migrate import migrate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GAIERROR = "gaierror: [Errno -2] Name or service not known"


def snapshot(
    at: datetime, status: str = "running", error: str | None = None, collector: str = "okx:public-0"
) -> CollectorHealth:
    h = CollectorHealth(
        collector=collector,
        time=at,
        status=status,  # type: ignore[arg-type]
        should_be_running=True,
        messages_received=10,
        last_error=error,
        status_since=at - timedelta(seconds=7),
    )
    return assess_health(h, HealthRules())


@pytest.fixture
def migrated(pg_url: str) -> str:
    migrate(pg_url, "off")
    return pg_url


def test_latest_snapshot_per_collector_with_its_cause(migrated: str) -> None:
    writer = HealthTableWriter(migrated)
    writer.write([snapshot(T0, "reconnecting", "gaierror: [Errno -2] Name or service not known")])
    writer.write([snapshot(T0 + timedelta(seconds=5), "reconnecting", "gaierror: again")])
    writer.write([snapshot(T0 + timedelta(seconds=1), "running")])  # older: must not replace the newer
    writer.write([snapshot(T0 + timedelta(seconds=2), "running", collector="okx:public-1")])
    writer.close()
    with psycopg.connect(migrated) as conn:
        rows = conn.execute(
            "SELECT collector, time, status, status_since, last_error, payload->>'status'"
            " FROM collector_health ORDER BY collector"
        ).fetchall()
        current = latest_health(conn, T0 + timedelta(seconds=20))
    assert rows == [
        (
            "okx:public-0",
            T0 + timedelta(seconds=5),
            "reconnecting",
            T0 - timedelta(seconds=2),
            "gaierror: again",
            "reconnecting",
        ),
        ("okx:public-1", T0 + timedelta(seconds=2), "running", T0 - timedelta(seconds=5), None, "running"),
    ]
    assert [(h["collector"], h["status"], h["status_since"]) for h in current] == [
        ("okx:public-0", "reconnecting", T0 - timedelta(seconds=2)),
        ("okx:public-1", "running", T0 - timedelta(seconds=5)),
    ]


def test_snapshots_older_than_30_seconds_are_not_current(migrated: str) -> None:
    writer = HealthTableWriter(migrated)
    writer.write(
        [snapshot(T0, collector="okx:old"), snapshot(T0 + timedelta(seconds=25), collector="okx:new")]
    )
    writer.close()
    with psycopg.connect(migrated) as conn:
        at_50 = [h["collector"] for h in latest_health(conn, T0 + timedelta(seconds=50))]
        at_29 = [h["collector"] for h in latest_health(conn, T0 + timedelta(seconds=29))]
    assert at_29 == ["okx:new", "okx:old"]
    assert at_50 == ["okx:new"]  # okx:old is 50 s old: an earlier run, not the current collector


def test_outage_drops_snapshots_and_recovers(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    try:
        migrate(url, "off")
        writer = HealthTableWriter(url, connect_timeout=1)
        writer.write([snapshot(T0)])
        server.stop()
        writer.write([snapshot(T0 + timedelta(seconds=5)), snapshot(T0 + timedelta(seconds=10))])
        assert writer.dropped == 2
        url = server.start()
        writer.url = url
        writer.write([snapshot(T0 + timedelta(seconds=15))])
        writer.close()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT time FROM collector_health").fetchall() == [
                (T0 + timedelta(seconds=15),)
            ]
    finally:
        server.stop()


def connection_report(
    at: datetime, state: ConnectionState, reconnects: int = 0, last_error: str | None = None
) -> ConnectionHealth:
    """A source's health record of one connection at ``at`` (counters zero unless given)."""
    return ConnectionHealth(
        exchange="okx",
        connection="public-0",
        instruments=("BTC-USDT",),
        time=at,
        state=state,
        connected_since=at if state == "subscribed" else None,
        last_message_at=None,
        messages_received=0,
        trades_emitted=0,
        trades_backfilled=0,
        duplicates_dropped=0,
        reconnects=reconnects,
        gaps_filled=0,
        gaps_unfilled=0,
        rejects=0,
        subscribe_errors=0,
        pings_sent=0,
        pongs_received=0,
        last_error=last_error,
    )


def test_status_since_is_when_the_collector_entered_its_status() -> None:
    def report(seconds: int, state: ConnectionState) -> ConnectionHealth:
        return connection_report(T0 + timedelta(seconds=seconds), state, seconds // 5, GAIERROR)

    state = None
    seen = []
    steps: list[tuple[int, ConnectionState]] = [
        (0, "connecting"),
        (5, "backoff"),
        (10, "backoff"),
        (15, "subscribed"),
        (20, "subscribed"),
    ]
    for seconds, connection_state in steps:
        state, h = health_step(state, report(seconds, connection_state))
        seen.append((h.status, (h.status_since - T0).seconds if h.status_since else None))
    assert seen == [
        ("starting", 0),
        ("reconnecting", 5),
        ("reconnecting", 5),
        ("running", 15),
        ("running", 15),
    ]
