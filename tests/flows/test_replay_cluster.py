"""The replay's summary in a cluster, without one: what another process reports is counted in by
process 0, which alone prints; the others only report (a fake board stands for the database's)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.database import WriterStats
from connectors.replay import TapeSource
from flows.replay import ReplayDatabaseSink, _Tally
from flows.replay_progress import ReplayProgress
from tests.flows.flowkit import XRP_TAPE


def at(day: int) -> datetime:
    return datetime(2019, 1, day, tzinfo=UTC)


class FakeBoard:
    def __init__(self, process: int, reports: list[dict[str, Any]] | None = None) -> None:
        self.process, self.processes = process, 2
        self.reports = reports or []
        self.progress: list[int] = []
        self.done: list[tuple[int, dict[str, Any]]] = []

    def others_read(self) -> int:
        return 7

    def report_progress(self, rows_read: int) -> None:
        self.progress.append(rows_read)

    def report_done(self, rows_read: int, tally: dict[str, Any]) -> bool:
        self.done.append((rows_read, tally))
        return True

    def wait_for_others(self, timeout: float) -> tuple[list[dict[str, Any]], list[int]]:
        return self.reports, []

    def close(self) -> None:
        pass


def test_a_tally_reported_by_another_process_is_counted_in() -> None:
    theirs = _Tally(spans={"A": (at(1), at(3)), "B": (at(2), at(5))})
    theirs.stats.trades_inserted, theirs.rows["signals"] = 10, 2
    ours = _Tally(spans={"C": (at(4), at(9))})
    ours.add(WriterStats(trades_inserted=5))
    ours.merge(theirs.message(), process=1)
    assert ours.stats.trades_inserted == 15 and ours.rows["signals"] == 2
    assert ours.ranges() == [(at(1), at(9))]


def test_only_process_0_prints_the_summary_of_the_whole_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = TapeSource([XRP_TAPE])
    other = _Tally()
    other.stats.trades_inserted = 12
    leader_out = io.StringIO()
    leader = ReplayDatabaseSink(
        None,  # type: ignore[arg-type]  # never written through here
        source,
        out=leader_out,
        cluster=FakeBoard(0, [other.message()]),  # type: ignore[arg-type]
    )
    monkeypatch.setattr(ReplayDatabaseSink, "_refresh", lambda self: [])
    leader.tally.stats.trades_inserted = 30
    leader.finished()
    assert "rows read from 1 tape(s)" in leader_out.getvalue() and "7 rows read" in leader_out.getvalue()
    assert "trades                42 new" in leader_out.getvalue()
    assert "written by 2 processes" in leader_out.getvalue()

    board = FakeBoard(1)
    follower_out = io.StringIO()
    follower = ReplayDatabaseSink(None, source, out=follower_out, cluster=board)  # type: ignore[arg-type]
    follower.tally.stats.trades_inserted = 12
    follower.finished()
    assert follower_out.getvalue() == ""
    assert board.done[0][1]["stats"]["trades_inserted"] == 12
    assert "process 1 of 2 wrote its share" in capsys.readouterr().err


def test_another_process_reports_its_progress_and_prints_none() -> None:
    board = FakeBoard(1)
    stream = io.StringIO()
    progress = ReplayProgress(TapeSource([XRP_TAPE]), stream, cluster=board)  # type: ignore[arg-type]
    progress.draw()
    progress.stop()
    assert stream.getvalue() == "" and board.progress == [0, 0]
    leader = ReplayProgress(TapeSource([XRP_TAPE]), stream, cluster=FakeBoard(0))  # type: ignore[arg-type]
    leader.draw()
    assert stream.getvalue().startswith("replay: 7/12,477 trades")
