"""The Health page's collector table shows the whole health record: what each collector follows and
collects, whether it is restarted, its statistics and how it is checked; a row written before the record
had those fields still shows."""

from __future__ import annotations

from datetime import timedelta

from dashboards.collectors import CollectorState
from dashboards.health import COLLECTOR_COLUMNS, collector_rows
from market.health import CollectorHealth
from tests.support.health_records import T0, full_record, stored_row


def test_a_collector_row_shows_every_field_of_its_record() -> None:
    state = CollectorState.from_row(stored_row(full_record()))
    frame = collector_rows([state], {}, T0 + timedelta(seconds=3))
    assert list(frame.columns) == COLLECTOR_COLUMNS
    row = frame.iloc[0]
    assert (row["collects"], row["auto restart"]) == ("trades of BTC-USDT, ETH-USDT", "yes")
    assert (row["uptime"], row["messages (processed)"]) == ("1d 01:01:01", "1000 (990)")
    assert (row["reconnects"], row["restarts"], row["errors"], row["last message age (s)"]) == (3, 2, 1, "5")
    assert row["health check"] == "every 5 s, stale after 60 s"
    assert row["status"] == "running since 11:59:00 UTC" and row["healthy"] == "yes"


def test_a_row_from_before_the_record_had_those_fields_still_shows() -> None:
    row = stored_row(
        CollectorHealth(collector="service:flow", time=T0, status="running", should_be_running=True)
    )
    added = ("symbols", "data_types", "auto_restart", "health_check_interval_seconds")
    payload = {k: v for k, v in row["payload"].items() if k not in added}
    del payload["stale_data_threshold_seconds"], payload["last_check_time"]
    state = CollectorState.from_row({**row, "payload": payload})
    shown = collector_rows([state], {}, T0).iloc[0]
    assert (shown["collects"], shown["auto restart"]) == ("", "unknown")
    assert shown["health check"] == "not checked" and shown["uptime"] == "00:00:00"
    # a record of today that does not say whether its process is restarted
    silent = CollectorState.from_row(stored_row(CollectorHealth("service:flow", T0, "running", True)))
    assert collector_rows([silent], {}, T0).iloc[0]["auto restart"] == "unknown"


def test_what_a_record_leaves_out_is_left_out_of_its_cells() -> None:
    first = collector_rows(
        [CollectorState.from_row(stored_row(full_record(health_check_interval_seconds=None)))], {}, T0
    )
    assert first.iloc[0]["health check"] == "stale after 60 s"  # the collector's first check
    untyped = collector_rows([CollectorState.from_row(stored_row(full_record(data_types=())))], {}, T0)
    assert untyped.iloc[0]["collects"] == "BTC-USDT, ETH-USDT"
