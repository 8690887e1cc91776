"""Collector health rules (pure, docs/redis.md "Health schema and issue rules")."""

from __future__ import annotations

from datetime import timedelta

import pytest

from market.health import HealthRules, assess_health, health_issues
from tests.support.live_samples import T0, health


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"last_message_time": T0 - timedelta(seconds=61)}, ["no message for 61 s"]),
        (
            {
                "last_message_time": T0 - timedelta(seconds=61),
                "should_be_running": False,
                "status": "stopped",
            },
            [],
        ),
        ({"last_message_time": None, "uptime_seconds": 30.0}, []),
        ({"last_message_time": None, "uptime_seconds": 90.0}, ["no message received in 90 s"]),
        ({"status": "reconnecting"}, ["status is reconnecting but the collector should be running"]),
        ({"status": "error", "last_error": "boom"}, ["status is error: boom"]),
        ({"errors": 50}, []),
        ({"errors": 51}, ["error rate 5.1% over 1000 messages"]),
        ({"reconnect_attempts": 4}, []),
        ({"reconnect_attempts": 10}, ["reconnect storm: 10 reconnect attempts in 600 s"]),
        ({"reconnect_attempts": 10, "uptime_seconds": 3600.0}, []),
        ({"messages_processed": 0, "messages_received": 20_001}, ["backlog of 20001"]),
    ],
)
def test_health_issues(changes: dict[str, object], expected: list[str]) -> None:
    issues = health_issues(health(**changes))
    assert len(issues) == len(expected), issues
    for issue, start in zip(issues, expected, strict=True):
        assert issue.startswith(start), issue
    assessed = assess_health(health(**changes))
    assert assessed.is_healthy == (not expected) and list(assessed.issues) == list(issues)


def test_health_rates_use_the_previous_snapshot() -> None:
    previous = health(
        messages_received=100_000, errors=10, reconnect_attempts=2, time=T0 - timedelta(minutes=1)
    )
    # Lifetime error rate is low, but 100 of the last 1000 messages failed; 6 reconnects in one minute.
    now = health(
        messages_received=101_000,
        messages_processed=101_000,
        errors=110,
        reconnect_attempts=8,
        uptime_seconds=36_000.0,
    )
    assert health_issues(now) == ()
    issues = health_issues(now, HealthRules(), previous)
    assert [i.split(" ")[0] for i in issues] == ["error", "reconnect"]
