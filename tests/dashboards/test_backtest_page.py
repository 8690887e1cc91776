"""The Backtests page's reads on a real PostgreSQL, with runs written by the test as the tables'
contract says, and the page (no browser): the runs listed, one opened, two side by side."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
import pytest

from dashboards.backtests import BacktestReader, BacktestsPage
from dashboards.data import DatabaseUnavailable, ReadOnlyDatabase
from sql.migrate import migrate
from tests.dashboards.backtest_kit import MINUTE, T0, StoredRun, store_candles, store_run

CLOSES = [100.0, 101.0, 102.5, 101.5, 103.0, 104.0, 103.5, 105.0, 104.5, 106.0, 107.0, 106.5]


@pytest.fixture
def stored(pg_url: str) -> Iterator[tuple[ReadOnlyDatabase, StoredRun, StoredRun]]:
    migrate(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        store_candles(conn, "BTC-USDT", CLOSES)
        first = store_run(conn, "BTC-USDT", "ema_crossover", CLOSES)
        second = store_run(conn, "XRP-ETH", "rsi_reversal", [c / 100 for c in CLOSES])  # no candles stored
    db = ReadOnlyDatabase(pg_url)
    yield db, first, second
    db.close()


def test_reads_runs_and_a_run_as_stored(stored: tuple[ReadOnlyDatabase, StoredRun, StoredRun]) -> None:
    db, first, second = stored
    reader = BacktestReader(db)
    runs = reader.runs()
    assert [r["run_id"] for r in runs] == [second.run_id, first.run_id]  # newest first
    assert runs[1]["metrics"]["final_equity"] == pytest.approx(first.equity[-1])
    view = reader.view(first.run_id)
    assert view is not None
    times = [T0 + (i + 1) * MINUTE for i in range(len(CLOSES))]
    assert list(view.equity["time"]) == [pd.Timestamp(t) for t in times]
    assert list(view.equity["equity"]) == pytest.approx(first.equity)
    assert [(t["entry_time"], t["exit_time"], t["open"]) for t in view.trades] == [
        (t["entry_time"], t["exit_time"], t["is_open"]) for t in first.trades
    ]
    assert [t["pnl"] for t in view.trades] == pytest.approx([t["pnl"] for t in first.trades])
    # the run's candles, read from the 1m view over its range
    assert list(view.candles["close"]) == CLOSES
    assert list(view.candles["time"]) == [pd.Timestamp(t) for t in times]
    assert view.title.startswith(f"#{first.run_id} ema_crossover on okx BTC-USDT 1m")
    assert reader.view(10_000) is None


def test_a_run_without_stored_candles_is_drawn_from_its_closes(
    stored: tuple[ReadOnlyDatabase, StoredRun, StoredRun],
) -> None:
    db, _, second = stored
    view = BacktestReader(db).view(second.run_id)
    assert view is not None
    assert list(view.candles["close"]) == pytest.approx(second.closes)
    assert list(view.candles["open"][1:]) == pytest.approx(second.closes[:-1])


def test_page_lists_runs_and_shows_two_side_by_side(
    stored: tuple[ReadOnlyDatabase, StoredRun, StoredRun],
) -> None:
    db, first, second = stored
    page = BacktestsPage(BacktestReader(db))
    assert page.table.object == "" and len(page.shown) == 0  # nothing read before the tab is shown
    page.activate()
    table = str(page.table.object)
    assert table.count('data-testid="backtest-run"') == 2
    assert "ema_crossover" in table and "rsi_reversal" in table and "XRP-ETH" in table
    assert page.run == second.run_id  # the newest opens
    assert len(page.shown) == 1
    page.compare_select.value = first.run_id
    assert len(page.shown) == 2
    titles = [str(panel[0].object) for panel in page.shown]
    assert f"#{second.run_id} rsi_reversal" in titles[0] and f"#{first.run_id} ema_crossover" in titles[1]
    page.compare_select.value = 0
    assert len(page.shown) == 1


def test_page_says_when_the_database_cannot_answer(pg_url: str) -> None:
    db = ReadOnlyDatabase(pg_url)  # not migrated: no backtest tables
    try:
        page = BacktestsPage(BacktestReader(db))
        page.activate()
        assert page.alert.visible and "migrate" in str(page.alert.object)
        with pytest.raises(DatabaseUnavailable):
            BacktestReader(db).runs()
    finally:
        db.close()


@pytest.mark.parametrize("engine", ["pg_url", "timescale_url"])
def test_a_long_run_is_read_by_period_with_its_exact_drawdown(
    engine: str, request: pytest.FixtureRequest
) -> None:
    pg_url = request.getfixturevalue(engine)  # on TimescaleDB the equity is a hypertable
    migrate(pg_url)
    n = 6_007  # over the 5,000 points drawn: read by 5m periods
    rng = np.random.default_rng(11)
    equity = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    start = datetime(2026, 1, 31, 3, 0, tzinfo=UTC)
    times = [start + (i + 1) * MINUTE for i in range(n)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO backtest_runs (exchange, symbol, timeframe, strategy, source, data_start, data_end,"
            " candles, config, code_version, metrics) VALUES ('okx', 'BTC-USDT', '1m', 'x', 'tapes', %s, %s,"
            " %s, '{}', 'test', '{}') RETURNING run_id",
            (start, times[-1], n),
        ).fetchone()
        assert row is not None
        with conn.cursor().copy(
            "COPY backtest_equity (run_id, time, close, cash, position, equity) FROM STDIN"
        ) as copy:
            for t, e in zip(times, equity, strict=True):
                copy.write_row((row[0], t, e / 100, 0.0, 100.0, e))
    db = ReadOnlyDatabase(pg_url)
    try:
        view = BacktestReader(db).view(row[0])
    finally:
        db.close()
    assert view is not None
    # the oracle: pandas over every point, periods of the 5m interval each point closes
    points = pd.DataFrame({"time": pd.DatetimeIndex(times), "equity": equity})
    points["drawdown"] = points["equity"] / points["equity"].cummax() - 1
    period = (points["time"] - pd.Timedelta(microseconds=1)).dt.floor("5min")
    expected = points.groupby(period).agg(
        time=("time", "last"), equity=("equity", "last"), drawdown=("drawdown", "min")
    )
    assert list(view.equity["time"]) == list(expected["time"])
    assert list(view.equity["equity"]) == pytest.approx(list(expected["equity"]), rel=1e-12)
    assert list(view.equity["drawdown"]) == pytest.approx(list(expected["drawdown"]), rel=1e-9, abs=1e-12)
    assert view.equity["drawdown"].min() == pytest.approx(points["drawdown"].min(), rel=1e-9)
    assert list(view.candles["close"]) == pytest.approx(list(expected["equity"] / 100), rel=1e-12)
