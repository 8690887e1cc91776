"""The supervisor of ``tcp.py up`` with real child processes: a service that exits is restarted after a
doubling, jittered backoff; a crash loop stops the restarts with the service's last error lines; the
state is written to ``collector_health`` for the Health page; the restart count and time are kept."""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime, timedelta

import psycopg
import pytest

from app.supervisor import Service, Supervisor
from configs.sections import SupervisorSettings
from dashboards.collectors import collector_states, collectors_sentence, empty_message
from sql.migrate import migrate

QUICK = SupervisorSettings(
    restart_initial=timedelta(seconds=0.05),
    restart_max=timedelta(seconds=0.4),
    crash_loop_exits=4,
    crash_loop_window=timedelta(seconds=30),
)


def crashing(name: str = "flow") -> Service:
    code = "import sys; print('ValueError: the spool directory is a file', file=sys.stderr); sys.exit(3)"
    return Service(name, [sys.executable, "-c", code])


def run_until(supervisor: Supervisor, done: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        supervisor.check()
        time.sleep(0.02)


def test_backoff_doubles_up_to_the_maximum_with_jitter_in_its_upper_half() -> None:
    supervisor = Supervisor([], QUICK, rng=random.Random(7))
    for exits, base in ((1, 0.05), (2, 0.1), (3, 0.2), (4, 0.4), (9, 0.4)):
        delays = [supervisor.delay(exits) for _ in range(200)]
        assert base / 2 <= min(delays) and max(delays) <= base
        assert max(delays) - min(delays) > base / 4  # jittered, not one fixed value


def test_a_crash_loop_stops_restarting_and_says_why(pg_url: str) -> None:
    migrate(pg_url, "off")
    said: list[str] = []
    flow = crashing()
    flow.start()
    supervisor = Supervisor([flow], QUICK, pg_url, say=said.append)
    run_until(supervisor, lambda: supervisor.tracks["flow"].crash_loop is not None)
    pids = set()
    assert supervisor.tracks["flow"].restarts == 3  # started once, restarted 3 times, 4 exits: given up
    time.sleep(0.5)
    supervisor.check(time.monotonic() + 10)  # never restarted again
    assert flow.process is not None and flow.process.poll() is not None
    pids.add(flow.process.pid)
    restarts = [line for line in said if "restarting in" in line]
    assert len(restarts) == 3
    assert restarts[0].startswith("flow exited with code 3 (ValueError: the spool directory is a file);")
    (loop,) = [line for line in said if "crash loop" in line]
    assert loop.startswith(
        "flow: crash loop: 4 exits within 30 s, not restarted (last exit code 3): ValueError"
    )
    assert loop.endswith("Fix the cause and run `python3 tcp.py up` again.")
    supervisor.check(time.monotonic() + 10)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT collector, time, status, is_healthy, status_since, last_error, payload"
            " FROM collector_health"
        ).fetchall()
    assert [(r[0], r[2], r[3]) for r in rows] == [("service:flow", "error", False)]
    assert "crash loop" in rows[0][5] and rows[0][6]["restarts"] == 3 and rows[0][6]["last_restart_time"]
    assert rows[0][6]["auto_restart"] is False and rows[0][6]["uptime_seconds"] == 0  # given up on
    # What the pages say (dashboards/collectors.py reads these rows).
    states = collector_states(
        [
            dict(
                zip(
                    ("collector", "time", "status", "is_healthy", "status_since", "last_error", "payload"),
                    r,
                    strict=True,
                )
            )
            for r in rows
        ]
    )
    now = rows[0][1]
    assert empty_message("BTC-USDT", "1m", states, now).startswith(
        "No candles yet for BTC-USDT 1m. The flow service is not running: crash loop: 4 exits"
    )
    assert "Service service:flow: error since" in collectors_sentence(states, now)
    supervisor.close()


def test_a_killed_service_is_restarted_and_counted(pg_url: str) -> None:
    migrate(pg_url, "off")
    said: list[str] = []
    service = Service("dashboard", [sys.executable, "-c", "import time; time.sleep(60)"])
    service.start()
    supervisor = Supervisor([service], QUICK, pg_url, say=said.append)
    assert service.process is not None
    first = service.process.pid
    service.process.kill()
    run_until(supervisor, lambda: supervisor.tracks["dashboard"].restarts == 1)
    assert service.process.pid != first and service.process.poll() is None
    assert said[0].startswith("dashboard exited with code -9 (no output); restarting in 0.0")
    supervisor.check(time.monotonic() + 5)
    with psycopg.connect(pg_url) as conn:
        status, payload = conn.execute(
            "SELECT status, payload FROM collector_health WHERE collector = 'service:dashboard'"
        ).fetchone()  # type: ignore[misc]
    assert status == "running" and payload["restarts"] == 1 and payload["last_restart_time"] is not None
    restarted = datetime.fromisoformat(payload["last_restart_time"])
    checked = datetime.fromisoformat(payload["time"])
    assert payload["auto_restart"] is True
    assert 0 < payload["uptime_seconds"] <= (checked - restarted).total_seconds() + 0.5
    service.stop()
    supervisor.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT status FROM collector_health").fetchone() == ("stopped",)


@pytest.mark.parametrize("bad", [{"restart_initial": "0"}, {"crash_loop_exits": 0}])
def test_policy_settings_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SupervisorSettings.model_validate(bad)


def test_a_restarted_flow_reports_its_restarts_in_its_collector_health() -> None:
    from datetime import UTC, datetime

    from flows.health import Restarts, health_step
    from tests.connectors.test_health_table import connection_report

    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    restarts = Restarts.from_environ({"TCP_RESTARTS": "2", "TCP_LAST_RESTART": at.isoformat()})
    assert restarts == Restarts(2, at) and Restarts.from_environ({}) == Restarts(0, None)
    report = connection_report(at, "subscribed")
    _, h = health_step(None, report, restarts)
    assert (h.restarts, h.last_restart_time) == (2, at)
