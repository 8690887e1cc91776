"""The collector health record's own fields: what the check writes on it (pure), and how the record
travels as JSON (Redis and the ``collector_health`` payload) and back."""

from __future__ import annotations

from datetime import timedelta

from connectors.redis_codec import decode, encode, payload_of
from market.health import HealthRules, assess_health
from tests.support import live_samples
from tests.support.health_records import T0, full_record

REFERENCE_FIELDS = {
    "status",
    "should_be_running",
    "symbols",
    "data_types",
    "auto_restart",
    "health_check_interval_seconds",
    "stale_data_threshold_seconds",
    "last_check_time",
    "messages_received",
    "messages_processed",
    "errors",
    "restarts",
    "uptime_seconds",
    "reconnect_attempts",
    "last_message_time",
    "last_error",
}


def test_the_check_stamps_its_time_and_the_threshold_it_judged_by() -> None:
    unchecked = live_samples.health()
    assert unchecked.last_check_time is None and unchecked.stale_data_threshold_seconds is None
    assert unchecked.auto_restart is None  # unknown unless the record says
    checked = assess_health(unchecked, HealthRules(stale_after=timedelta(seconds=90)))
    assert checked.last_check_time == unchecked.time
    assert checked.stale_data_threshold_seconds == 90.0
    # judged by that threshold: 75 s of silence is stale at 60 s, not at 90 s
    quiet = live_samples.health(last_message_time=live_samples.T0 - timedelta(seconds=75))
    assert assess_health(quiet, HealthRules(stale_after=timedelta(seconds=90))).is_healthy
    assert not assess_health(quiet).is_healthy and assess_health(quiet).stale_data_threshold_seconds == 60.0


def test_the_record_round_trips_every_reference_field() -> None:
    kind, channel, payload = payload_of(full_record())
    assert (kind, channel) == ("health", "tcp:health")
    assert REFERENCE_FIELDS <= set(payload)
    back = decode(encode(payload))
    assert {k: back[k] for k in REFERENCE_FIELDS} == {
        "status": "running",
        "should_be_running": True,
        "symbols": ["BTC-USDT", "ETH-USDT"],
        "data_types": ["trades"],
        "auto_restart": True,
        "health_check_interval_seconds": 5.0,
        "stale_data_threshold_seconds": 60.0,
        "last_check_time": T0,
        "messages_received": 1000,
        "messages_processed": 990,
        "errors": 1,
        "restarts": 2,
        "uptime_seconds": 90_061.0,
        "reconnect_attempts": 3,
        "last_message_time": T0 - timedelta(seconds=2),
        "last_error": "ConnectionClosedError: no close frame received or sent",
    }
