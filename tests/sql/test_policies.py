"""Compression, retention and rollup-refresh policies (sql.policies) on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from configs.settings import StorageSettings
from sql import policies, queries
from sql.migrate import migrate

# 1m candles relative to now: a UTC day 4 years ago (beyond the 3-year retention), the UTC days 200 and 25
# days ago (compressed: rollups after 30 days, 1m candles after 14), and the last 3 hours up to the
# current minute.
CANDLES = """
INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count,
                        vwap, first_trade_id, last_trade_id)
SELECT 'okx', 'TST-USDT', t, p, p + 1, p - 1, p + 0.5, 2, 2 * (p + 0.25), 4, p + 0.25, n * 10, n * 10 + 3
FROM (SELECT t, 100 + (extract(epoch FROM t)::bigint / 60) %% 37 AS p, extract(epoch FROM t)::bigint / 60 AS n
      FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, INTERVAL '1 minute') t) minutes
"""
TRADES = """
INSERT INTO trades (exchange, symbol, trade_id, time, price, size, side, origin)
SELECT 'okx', 'TST-USDT', extract(epoch FROM t)::bigint, t, 100, 1, 'buy', 'ws'
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, INTERVAL '10 minutes') t
"""


OLD_DAYS = (200, 25)
RETAINING = StorageSettings(
    trades_retention=timedelta(days=90),
    rejects_retention=timedelta(days=90),
    candles_retention=timedelta(days=1095),
    indicators_retention=timedelta(days=1095),
)
"""Retention enabled (it is opt-in): raw input 90 days, candles and indicators 3 years."""


def load_recent(conn: psycopg.Connection[Any]) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    midnight = now.replace(hour=0, minute=0)
    days = [(midnight - timedelta(days=d), midnight - timedelta(days=d - 1)) for d in (1460, *OLD_DAYS)]
    for start, end in [*days, (now - timedelta(hours=3), now)]:
        conn.execute(CANDLES, {"start": start + timedelta(minutes=1), "end": end})
    for start, end in [
        (now - timedelta(days=100, hours=1), now - timedelta(days=100)),
        (now - timedelta(days=10, hours=1), now - timedelta(days=10)),
        (now - timedelta(hours=1), now),
    ]:
        conn.execute(TRADES, {"start": start, "end": end})
    conn.execute(
        "INSERT INTO late_trades (exchange, symbol, trade_id, time, price, size, side, candle_close,"
        " lateness)"
        " VALUES ('okx', 'TST-USDT', 1, %(old)s, 1, 1, 'buy', %(old)s, '5 s'),"
        "        ('okx', 'TST-USDT', 2, %(new)s, 1, 1, 'buy', %(new)s, '5 s')",
        {"old": now - timedelta(days=100), "new": now - timedelta(days=1)},
    )
    return now


def snapshot(conn: psycopg.Connection[Any], now: datetime) -> dict[str, Any]:
    """What the dashboard reads about the retained data."""
    shown: dict[str, Any] = {}
    for timeframe in queries.TIMEFRAMES:
        shown[f"latest {timeframe}"] = queries.latest_candles(conn, "okx", "TST-USDT", timeframe, 2)
        shown[f"retained {timeframe}"] = queries.candles_between(
            conn, "okx", "TST-USDT", timeframe, now - timedelta(days=1000), now
        )
        for days in OLD_DAYS:
            shown[f"{days} days ago {timeframe}"] = queries.candles_between(
                conn,
                "okx",
                "TST-USDT",
                timeframe,
                now - timedelta(days=days + 1),
                now - timedelta(days=days - 1),
            )
    shown["trades"] = conn.execute(
        "SELECT count(*), min(time) FROM trades WHERE time > %s", (now - timedelta(days=89),)
    ).fetchall()
    return shown


def count(conn: psycopg.Connection[Any], relation: str, before: datetime) -> int:
    statement = {
        "candles_1m": "SELECT count(*) FROM candles_1m WHERE time < %s",
        "candles_5m": "SELECT count(*) FROM candles_5m WHERE time < %s",
        "candles_1d": "SELECT count(*) FROM candles_1d WHERE time < %s",
        "trades": "SELECT count(*) FROM trades WHERE time < %s",
        "late_trades": "SELECT count(*) FROM late_trades WHERE time < %s",
    }[relation]
    row = conn.execute(statement, (before,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def timescale() -> Iterator[str]:
    from tests.support.timescale_server import TimescaleTestServer

    with TimescaleTestServer() as server:
        migrate(server.url, "on")
        yield server.url


@pytest.mark.timescale
def test_jobs_are_registered_and_running_them_keeps_what_is_retained(timescale: str) -> None:
    with psycopg.connect(timescale, autocommit=True) as conn:
        jobs = {(proc, relation) for _, proc, relation in policies.project_jobs(conn)}
        assert {("policy_compression", r) for r, _ in policies.COMPRESSION} <= jobs
        assert {("policy_refresh_continuous_aggregate", r) for r in policies.ROLLUPS} <= jobs
        assert not any(proc == "policy_retention" for proc, _ in jobs)  # retention is opt-in
        # the migrations registered exactly the configured defaults: nothing to change
        assert policies.apply_policies(conn, StorageSettings()) == []
        added = policies.apply_policies(conn, RETAINING)
        assert sorted(added) == sorted(
            f"retention {r.relation} after {getattr(RETAINING, r.setting)}" for r in policies.RETENTION
        )
        jobs = {(proc, relation) for _, proc, relation in policies.project_jobs(conn)}
        assert {("policy_retention", r.relation) for r in policies.RETENTION} <= jobs

        now = load_recent(conn)
        policies.refresh_rollups(conn)
        before = snapshot(conn, now)
        assert all(before[f"{days} days ago {tf}"] for days in OLD_DAYS for tf in queries.TIMEFRAMES)
        assert before["latest 5m"][-1]["time"] > now - timedelta(minutes=10)
        four_years = now - timedelta(days=1400)
        assert count(conn, "candles_1m", four_years) > 0 and count(conn, "candles_5m", four_years) > 0

        announced = policies.retention_summary(conn, RETAINING)
        assert len(announced) == len(policies.RETENTION)  # one line per job, nothing kept forever
        assert any(
            line.endswith("drops candles_1m older than 1095 days: 1440 rows older now") for line in announced
        ), announced
        done = policies.run_maintenance(conn, RETAINING)
        assert len(done) >= len(jobs)
        compressed = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT hypertable_name FROM timescaledb_information.chunks WHERE is_compressed"
            )
        }
        assert {"trades", "candles_1m"} <= compressed
        materialized = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks c"
            " JOIN timescaledb_information.continuous_aggregates a"
            "   ON a.materialization_hypertable_name = c.hypertable_name"
            " WHERE c.is_compressed AND a.view_name = 'rollup_5m'"
        ).fetchone()
        assert materialized is not None and materialized[0] > 0
        assert snapshot(conn, now) == before
        for relation in ("candles_1m", "candles_5m", "candles_1d"):
            assert count(conn, relation, four_years) == 0, relation
        assert count(conn, "trades", now - timedelta(days=90)) == 0
        assert count(conn, "trades", now - timedelta(days=9)) > 0
        assert count(conn, "late_trades", now - timedelta(days=90)) == 0
        assert count(conn, "late_trades", now) == 1


def floor_5m(t: datetime) -> datetime:
    return t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)


@pytest.mark.timescale
def test_the_refresh_job_materialises_an_interval_once_it_closed_and_never_before(timescale: str) -> None:
    """docs/sql.md, "Delay": a run of the 5m refresh job at t materialises the intervals that closed by
    t - lag (the lag defaults to the 2 s candle grace), and none closing later."""
    with psycopg.connect(timescale, autocommit=True) as conn:
        now = load_recent(conn)
        [(job_id, config)] = [
            (j, c)
            for j, proc, rel, c in conn.execute(
                "SELECT job_id, proc_name, hypertable_name, config FROM timescaledb_information.jobs"
            )
            if proc == "policy_refresh_continuous_aggregate" and rel == "rollup_5m"
        ]
        assert config["end_offset"] == "00:00:02"
        lag = timedelta(seconds=2)
        before = datetime.now(UTC)
        conn.execute("CALL run_job(%s)", (job_id,))
        after = datetime.now(UTC)
        closes = [r[0] for r in conn.execute("SELECT time FROM rollup_5m ORDER BY time")]
        assert closes and floor_5m(before - lag) <= max(closes) <= after - lag
        if max(closes) <= now:  # its closing minute is in (unless a minute began since the load)
            visible = queries.latest_candles(conn, "okx", "TST-USDT", "5m", 1)
            assert visible[0]["time"] == max(closes)


@pytest.mark.timescale
def test_applying_changed_settings_replaces_the_jobs_once(timescale: str) -> None:
    storage = StorageSettings(
        trades_retention=timedelta(days=30),
        rollup_refresh_lag=timedelta(minutes=2),
        rollups_compress_after=timedelta(days=10),
    )
    with psycopg.connect(timescale, autocommit=True) as conn:
        changes = policies.apply_policies(conn, storage)
        assert sorted(changes) == sorted(
            ["retention trades after 30 days, 0:00:00"]
            + [f"compression {r} after 10 days, 0:00:00" for r in policies.ROLLUPS]
            + [
                f"refresh {r} over [now - 3 days, 0:00:00, now - 0:02:00] every 0:00:15"
                for r in policies.ROLLUPS
            ]
        )
        assert policies.apply_policies(conn, storage) == []
        configs = {
            (proc, rel): config
            for _, proc, rel, config in conn.execute(
                "SELECT job_id, proc_name, hypertable_name, config FROM timescaledb_information.jobs"
            )
        }
        assert configs[("policy_retention", "trades")]["drop_after"] == "30 days"
        assert configs[("policy_refresh_continuous_aggregate", "rollup_1h")]["end_offset"] == "00:02:00"
        assert len([k for k in configs if k[1] == "rollup_4h"]) == 2  # refresh, compression
        # back to the default: the retention job is removed, the trades are kept forever
        changes = policies.apply_policies(
            conn,
            StorageSettings(
                rollup_refresh_lag=timedelta(minutes=2), rollups_compress_after=timedelta(days=10)
            ),
        )
        assert changes == ["retention trades removed (kept forever)"]
        assert not [j for j in policies.project_jobs(conn) if j[1] == "policy_retention"]
        [summary] = policies.retention_summary(conn, StorageSettings())
        assert summary.startswith("none for trades, late_trades, rejects, candles_1m, rollup_5m")


def test_a_refresh_lag_shorter_than_the_grace_is_refused(pg_url: str) -> None:
    migrate(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(policies.PolicyError, match="grace"):
        policies.apply_policies(
            conn, StorageSettings(rollup_refresh_lag=timedelta(seconds=1)), candle_grace=timedelta(seconds=2)
        )


def test_plain_postgres_retention_deletes_old_rows_and_keeps_the_rest(pg_url: str) -> None:
    migrate(pg_url, "off")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        now = load_recent(conn)
        before = snapshot(conn, now)
        assert all(before[f"{days} days ago {tf}"] for days in OLD_DAYS for tf in queries.TIMEFRAMES)
        assert policies.apply_policies(conn, StorageSettings()) == []
        assert policies.run_maintenance(conn, StorageSettings()) == []  # nothing deleted by default
        assert snapshot(conn, now) == before
        assert count(conn, "candles_1m", now - timedelta(days=1400)) > 0
        done = policies.run_maintenance(conn, RETAINING)
        assert "deleted 1440 rows of candles_1m (older than 1095 days)" in done
        assert any(
            line.startswith("deleted") and line.endswith(" trades (older than 90 days)") for line in done
        )
        assert snapshot(conn, now) == before
        four_years = now - timedelta(days=1400)
        for relation in ("candles_1m", "candles_5m", "candles_1d"):
            assert count(conn, relation, four_years) == 0, relation
        assert count(conn, "trades", now - timedelta(days=90)) == 0
        assert count(conn, "late_trades", now) == 1


def test_plain_postgres_refresh_rebuilds_what_the_triggers_build(pg_url: str) -> None:
    migrate(pg_url, "off")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        now = load_recent(conn)
        by_trigger = snapshot(conn, now)
        for name in policies.ROLLUPS:
            conn.execute(f"TRUNCATE {name}")  # constant names
        conn.execute("ALTER TABLE candles_1m DISABLE TRIGGER USER")
        conn.execute("DELETE FROM candles_1m WHERE time > %s", (now - timedelta(hours=1),))
        conn.execute(CANDLES, {"start": now - timedelta(minutes=59), "end": now})
        conn.execute("ALTER TABLE candles_1m ENABLE TRIGGER USER")
        assert queries.latest_candles(conn, "okx", "TST-USDT", "5m") == []
        policies.refresh_rollups(conn)
        assert snapshot(conn, now) == by_trigger


def test_the_command_applies_and_runs(
    pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(pg_url, "off")
    assert policies.main(["--database-url", pg_url, "--run", "--refresh-all"]) == 0
    out = capsys.readouterr().out
    assert "rollups refreshed" in out and "deleted" not in out
    assert "retention: none for trades, late_trades, rejects, candles_1m" in out
    monkeypatch.setenv("STORAGE__TRADES_RETENTION", "P90D")
    assert policies.main(["--database-url", pg_url, "--run"]) == 0
    out = capsys.readouterr().out
    assert "deleted 0 rows of trades (older than 90 days)" in out
    assert "retention: none for late_trades, rejects" in out


def test_storage_settings_refuse_inconsistent_ages() -> None:
    with pytest.raises(ValueError, match="trades_compress_after must be shorter than trades_retention"):
        StorageSettings(trades_retention=timedelta(days=5))
    with pytest.raises(ValueError, match="rollups_compress_after must be longer"):
        StorageSettings(rollups_compress_after=timedelta(days=2))
    with pytest.raises(ValueError, match="positive"):
        StorageSettings(candles_retention=timedelta(0))
    assert StorageSettings.model_validate({"trades_retention": "30d"}).trades_retention == timedelta(days=30)


def test_retention_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from configs.settings import load_settings

    default = StorageSettings()
    assert [
        default.trades_retention,
        default.candles_retention,
        default.indicators_retention,
        default.rejects_retention,
    ] == [None] * 4
    assert StorageSettings.model_validate({"candles_retention": "never"}).candles_retention is None
    assert StorageSettings.model_validate({"candles_retention": None}).candles_retention is None
    monkeypatch.setenv("STORAGE__TRADES_RETENTION", "P30D")
    monkeypatch.setenv("STORAGE__CANDLES_RETENTION", "never")
    storage = load_settings().storage
    assert (storage.trades_retention, storage.candles_retention) == (timedelta(days=30), None)
    assert policies.kept_forever(storage) == [
        "late_trades",
        "rejects",
        "candles_1m",
        *policies.ROLLUPS,
        "indicators",
        "signals",
        "gaps",
    ]
    assert policies.refresh_lag(storage, timedelta(seconds=2)) == timedelta(seconds=2)
