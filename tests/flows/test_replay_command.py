"""What a replay leaves behind: the real command's progress and summary, the higher timeframes covering the
replayed range on both engines, and the replayed history kept by the next start.

Oracle for the higher timeframes: the rollup of the stored 1m candles computed here with pandas (TIME.md
rule 6), independently of the SQL.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main

from configs.settings import Settings
from connectors.database import DatabaseSink
from connectors.replay import TapeSource
from flows.graph import FlowSinks
from flows.replay import TABLES, ReplayDatabaseSink, ReplayProgress, progress_line, replay_flow
from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.flows.flowkit import XRP_TAPE

FIELDS = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "first_trade_id",
    "last_trade_id",
]
RULES = {"5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}
COUNTS = {table: f"SELECT count(*) FROM {table}" for table in TABLES}  # constant names


def stored(conn: psycopg.Connection[Any], relation: str) -> dict[datetime, tuple[Any, ...]]:
    rows = conn.execute(
        f"SELECT time, {', '.join(FIELDS)} FROM {relation} ORDER BY time"
    ).fetchall()  # constant
    return {row[0]: tuple(row[1:]) for row in rows}


def pandas_rollup(
    minutes: dict[datetime, tuple[Any, ...]], timeframe: str
) -> dict[datetime, tuple[Any, ...]]:
    """Rule 6 over the 1m rows: an interval (labelled by its close) holds the minutes closing in
    (close - width, close]; it is complete once its closing minute is in; flat minutes carry no prices."""
    import pandas as pd

    frame = pd.DataFrame([(t, *values) for t, values in minutes.items()], columns=["time", *FIELDS])
    frame["close_of"] = frame["time"].dt.ceil(RULES[timeframe])
    out: dict[datetime, tuple[Any, ...]] = {}
    for close, group in frame.sort_values("time").groupby("close_of"):
        if group["time"].iloc[-1] != close:  # its closing minute is not in: not sealed
            continue
        traded = group[group["trade_count"] > 0]
        if traded.empty:
            last = group["close"].iloc[-1]
            out[close.to_pydatetime()] = (last, last, last, last, Decimal(0), Decimal(0), 0, None, None, None)
            continue
        volume, quote = sum(traded["volume"]), sum(traded["quote_volume"])
        out[close.to_pydatetime()] = (
            traded["open"].iloc[0],
            max(traded["high"]),
            min(traded["low"]),
            traded["close"].iloc[-1],
            volume,
            quote,
            int(traded["trade_count"].sum()),
            quote / volume,
            int(traded["first_trade_id"].iloc[0]),
            int(traded["last_trade_id"].iloc[-1]),
        )
    return out


def assert_rollups_cover_the_replay(url: str) -> None:
    with psycopg.connect(url) as conn:
        minutes = stored(conn, "candles_1m")
        for timeframe in RULES:
            expected = pandas_rollup(minutes, timeframe)
            assert expected, timeframe
            assert stored(conn, f"candles_{timeframe}") == expected, timeframe


def run(argv: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING", **env},
    )


def test_the_replay_command_reports_progress_and_what_it_wrote_and_up_keeps_it(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url, "off")
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url}
    replay = run(
        [sys.executable, "-m", "bytewax.run", "flows.replay"],
        {**env, "REPLAY_TAPES": str(XRP_TAPE)},
        tmp_path,
    )
    assert replay.returncode == 0, replay.stderr
    assert "replay: 12,477/12,477 trades (100%)" in replay.stderr  # not a terminal: plain lines
    summary = dict(re.findall(r"(?m)^  (\w+) +([\d,]+)", replay.stdout))
    assert re.search(
        r"(?m)^Replay done in \d:\d\d:\d\d \([\d.]+ s\): 12,477 rows read from 1 tape", replay.stdout
    )
    with psycopg.connect(pg_url) as conn:
        counts = {table: conn.execute(COUNTS[table]).fetchone()[0] for table in TABLES}  # type: ignore[index]
    assert {table: int(summary[table].replace(",", "")) for table in TABLES} == counts
    assert counts["trades"] == 12_477 and counts["candles_1m"] == 3_559 and counts["indicators"] > 0
    assert "cover the 1m candles closing 2019-10-11 00:01 .. 2019-10-13 11:19 UTC" in replay.stdout
    assert_rollups_cover_the_replay(pg_url)

    # the next start keeps 2019 history (retention is opt-in) and says so
    up = run([sys.executable, "tcp.py", "up", "--once"], env, tmp_path)
    assert up.returncode == 0, up.stderr
    assert "Retention: none for trades, late_trades, rejects, candles_1m" in up.stdout
    with psycopg.connect(pg_url) as conn:
        assert {table: conn.execute(COUNTS[table]).fetchone()[0] for table in TABLES} == counts  # type: ignore[index]

    # retention asked for: announced with what it deleted
    up = run(
        [sys.executable, "tcp.py", "up", "--once"], {**env, "STORAGE__TRADES_RETENTION": "P90D"}, tmp_path
    )
    assert up.returncode == 0, up.stderr
    assert "Retention: deleted 12477 rows of trades (older than 90 days)" in up.stdout
    assert "Retention: none for late_trades, rejects, candles_1m" in up.stdout
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM candles_1m").fetchone() == (counts["candles_1m"],)


@pytest.mark.timescale
def test_after_a_replay_the_continuous_aggregates_cover_it_and_the_next_start_keeps_it(
    timescale_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2019 is far outside the refresh jobs' window: only the refresh at the end of the replay covers it.
    The policies `up` applies at start, and every job run once, then keep it all."""
    from app.stack import _apply_storage_policies
    from sql.policies import run_maintenance

    migrate(timescale_url, "on")
    source = TapeSource([XRP_TAPE])
    sink = ReplayDatabaseSink(DatabaseSink(timescale_url, tmp_path / "spool"), source)
    run_main(replay_flow(Settings(replay_tapes=[XRP_TAPE]), FlowSinks(database=sink), source=source))
    assert sink.tally.stats.candles_written == 3_559
    assert "candles_1m         3,559 new" in capsys.readouterr().out
    assert_rollups_cover_the_replay(timescale_url)

    settings = Settings()
    assert _apply_storage_policies(settings, timescale_url) is False  # TimescaleDB: its jobs do the work
    assert "Retention: none for trades, late_trades, rejects, candles_1m" in capsys.readouterr().out
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        before = {table: conn.execute(COUNTS[table]).fetchone() for table in TABLES}
        assert all(
            job.startswith("policy_re") or job.startswith("policy_compression")
            for job in run_maintenance(conn, settings.storage)
        )
        assert {table: conn.execute(COUNTS[table]).fetchone() for table in TABLES} == before
    assert_rollups_cover_the_replay(timescale_url)


def test_progress_line() -> None:
    assert (
        progress_line(6_000, 12_000, 2.0) == "replay: 6,000/12,000 trades (50%), 3,000 trades/s, ETA 0:00:02"
    )
    assert (
        progress_line(0, 12_000, 0.0, bar_width=4) == "replay: [----] 0/12,000 trades (0%), 0 trades/s, ETA ?"
    )
    assert progress_line(12_000, 12_000, 4.0, bar_width=4).startswith(
        "replay: [####] 12,000/12,000 trades (100%)"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_a_bar_on_a_terminal_and_prints_lines_elsewhere() -> None:
    source = TapeSource([XRP_TAPE])
    assert source.total_rows == 12_477 and source.rows_read == 0
    terminal, log = _Terminal(), io.StringIO()
    ReplayProgress(source, terminal).draw()
    ReplayProgress(source, terminal).stop()
    ReplayProgress(source, log).draw()
    assert terminal.getvalue().startswith("\rreplay: [------------------------------] 0/12,477 trades (0%)")
    assert terminal.getvalue().endswith("\x1b[K\n") and terminal.getvalue().count("\r") == 2
    assert log.getvalue().startswith("replay: 0/12,477 trades (0%)") and log.getvalue().count("\n") == 1


def test_the_refreshed_ranges_are_the_instruments_spans_merged_where_they_overlap() -> None:
    from datetime import UTC

    from flows.replay import _Tally

    def at(year: int, day: int) -> datetime:
        return datetime(year, 1, day, tzinfo=UTC)

    tally = _Tally(
        spans={
            "A": (at(2019, 1), at(2019, 3)),
            "B": (at(2019, 2), at(2019, 5)),
            "C": (at(2024, 1), at(2024, 2)),
        }
    )
    assert tally.ranges() == [(at(2019, 1), at(2019, 5)), (at(2024, 1), at(2024, 2))]
