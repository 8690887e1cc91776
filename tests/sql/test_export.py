"""``python3 tcp.py export`` (app.export) on both engines holding the XRP-ETH replay: CSV and parquet,
read back with pandas, equal an independent SQL read of the same rows (numbers as PostgreSQL's text,
times in UTC); candles are labelled by their close as the stream emitted them; the range is
``[start, end)`` (trades by time, candles lying wholly in it) at every page size; an empty range writes
only the header or schema; a series that is not stored stops the command naming the flag."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.export import main, options, run
from tests.conftest import REPO_ROOT
from tests.sql.conftest import Loaded

DAY = datetime(2019, 10, 12, tzinfo=UTC)
CANDLE_SQL = """
SELECT exchange, symbol, time, open::text, high::text, low::text, close::text, volume::text,
       quote_volume::text, trade_count, vwap::text, first_trade_id, last_trade_id
FROM candles
WHERE timeframe = %(tf)s AND exchange = 'okx' AND symbol = 'XRP-ETH'
  AND time - %(length)s::interval >= %(start)s AND time <= %(end)s
ORDER BY time
"""
TRADE_SQL = """
SELECT exchange, symbol, trade_id, time, price::text, size::text, side, received_at, fill_count, seq_id,
       exch_source, origin
FROM trades
WHERE exchange = 'okx' AND symbol = 'XRP-ETH' AND time >= %(start)s AND time < %(end)s
ORDER BY time, trade_id
"""
LENGTHS = {"1m": "1 minute", "5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour", "4h": "4 hours"}
LENGTHS["1d"] = "24 hours"
FAR = {"start": datetime(1970, 1, 1, tzinfo=UTC), "end": datetime(9999, 1, 1, tzinfo=UTC)}


@pytest.fixture
def env(xrp_db: Loaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Loaded:
    monkeypatch.setenv("DATABASE_URL", xrp_db.url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return xrp_db


def oracle(url: str, query: str, **params: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cursor = conn.execute(query, {**FAR, **params})
        names = [d.name for d in cursor.description or []]
        return names, cursor.fetchall()


def export(argv: list[str], page_rows: int | None = None, err: StringIO | None = None) -> Any:
    opts = options(argv)
    if page_rows is not None:
        from dataclasses import replace

        opts = replace(opts, page_rows=page_rows)
    return run(opts, err=err or StringIO())


def csv_text(rows: list[tuple[Any, ...]], trades: bool) -> list[list[str]]:
    """The oracle's rows as the CSV should hold them: ISO 8601 UTC times (trade times with
    microseconds), numbers as stored, NULL empty."""

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.isoformat(timespec="microseconds" if trades else "auto")
        return str(value)

    return [[text(v) for v in row] for row in rows]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return list(frame.columns), frame.to_numpy().tolist()


def read_parquet(path: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    frame = pd.read_parquet(path, dtype_backend="pyarrow")
    columns = [[None if v is pd.NA else v for v in frame[c].tolist()] for c in frame.columns]
    return list(frame.columns), list(zip(*columns, strict=True))


@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h", "1d"])
def test_candles_equal_the_sql_read_labelled_by_their_close(
    env: Loaded, tmp_path: Path, timeframe: str
) -> None:
    start, end = DAY - timedelta(days=1), DAY + timedelta(days=1)
    names, rows = oracle(env.url, CANDLE_SQL, tf=timeframe, length=LENGTHS[timeframe], start=start, end=end)
    argv = ["--symbol", "XRP-ETH", "--timeframe", timeframe, "--start", "2019-10-11", "--end", "2019-10-13"]
    csv_path, parquet_path = tmp_path / "c.csv", tmp_path / "c.parquet"
    export([*argv, "-o", str(csv_path)], page_rows=7)
    export([*argv, "-o", str(parquet_path)], page_rows=7)
    # right-labelled: the times are the closes of the candles the stream emitted in the range
    closes = [c.close_time for c in env.stream.of(timeframe) if c.open_time >= start and c.close_time <= end]
    assert [row[2] for row in rows] == closes and len(closes) >= 2
    assert read_csv(csv_path) == (names, csv_text(rows, trades=False))
    assert read_parquet(parquet_path) == (names, rows)


def test_parquet_types_times_in_utc_microseconds_and_numbers_exact(env: Loaded, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    export(
        [
            "--symbol",
            "XRP-ETH",
            "--trades",
            "--end",
            "2019-10-11T01:00Z",
            "--format",
            "parquet",
            "-o",
            str(path),
        ]
    )
    schema = pq.read_schema(path)
    assert schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("price").type == pa.string() and schema.field("trade_id").type == pa.int64()
    assert schema.field("size").metadata == {b"sql_type": b"numeric"}
    first = pq.read_table(path).slice(0, 1).to_pylist()[0]
    # the first line of the tape: XRP-ETH,13519807,sell,0.00141342,23.00000000,1570752011620
    assert (first["trade_id"], first["price"], first["size"], first["side"]) == (
        13519807,
        "0.00141342",
        "23.00000000",
        "sell",
    )
    assert first["time"] == datetime(2019, 10, 11, 0, 0, 11, 620000, tzinfo=UTC)


def test_every_trade_equals_the_sql_read_at_any_page_size(env: Loaded, tmp_path: Path) -> None:
    names, rows = oracle(env.url, TRADE_SQL)
    assert len(rows) > 12_000
    err = StringIO()
    done = export(["--symbol", "XRP-ETH", "--trades", "-o", str(tmp_path / "t.csv")], page_rows=997, err=err)
    assert done.rows == len(rows)
    assert read_csv(tmp_path / "t.csv") == (names, csv_text(rows, trades=True))
    assert f"export: 100%, {len(rows):,} trades" in err.getvalue()
    export(["--symbol", "XRP-ETH", "--trades", "-o", str(tmp_path / "t.parquet")], page_rows=1_000)
    assert read_parquet(tmp_path / "t.parquet") == (names, rows)


def test_pages_split_between_trades_of_the_same_time(env: Loaded, tmp_path: Path) -> None:
    start, end = datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 11, 1, tzinfo=UTC)
    names, rows = oracle(env.url, TRADE_SQL, start=start, end=end)
    time = names.index("time")
    assert any(rows[i][time] == rows[i + 1][time] for i in range(1, len(rows) - 1, 2)), "a split page"
    argv = ["--symbol", "XRP-ETH", "--trades", "--start", start.isoformat(), "--end", end.isoformat()]
    export([*argv, "-o", str(tmp_path / "t.csv")], page_rows=2)
    assert read_csv(tmp_path / "t.csv") == (names, csv_text(rows, trades=True))


def test_the_range_holds_trades_from_start_and_before_end(env: Loaded, tmp_path: Path) -> None:
    names, rows = oracle(env.url, TRADE_SQL)
    time = names.index("time")
    times = [row[time] for row in rows]
    # a start and an end at exactly the time of a trade, with trades at the end's time
    k = next(i for i in range(100, len(times)) if times[i - 1] < times[i])
    m = next(i for i in range(k + 200, len(times)) if times[i - 1] < times[i] == times[i + 1])
    argv = ["--symbol", "XRP-ETH", "--trades", "--start", times[k].isoformat(), "--end", times[m].isoformat()]
    done = export([*argv, "-o", str(tmp_path / "t.csv")], page_rows=50)
    assert read_csv(tmp_path / "t.csv") == (names, csv_text(rows[k:m], trades=True))
    assert (done.span.first, done.span.last) == (times[k], times[m - 1])


@pytest.mark.parametrize(
    ("timeframe", "start", "end", "first", "last"),
    [
        ("1m", "2019-10-12T00:00Z", "2019-10-12T06:00Z", "2019-10-12T00:01Z", "2019-10-12T06:00Z"),
        ("1m", "2019-10-12T00:00:30Z", "2019-10-12T06:00:59Z", "2019-10-12T00:02Z", "2019-10-12T06:00Z"),
        ("5m", "2019-10-12T00:03Z", "2019-10-12T06:04Z", "2019-10-12T00:10Z", "2019-10-12T06:00Z"),
        ("1h", "2019-10-12T00:00Z", "2019-10-12T06:00Z", "2019-10-12T01:00Z", "2019-10-12T06:00Z"),
        ("1d", "2019-10-11T00:00Z", "2019-10-13T00:00Z", "2019-10-12T00:00Z", "2019-10-13T00:00Z"),
    ],
)
def test_candles_lie_wholly_in_the_range(
    env: Loaded, tmp_path: Path, timeframe: str, start: str, end: str, first: str, last: str
) -> None:
    argv = ["--symbol", "XRP-ETH", "--timeframe", timeframe, "--start", start, "--end", end]
    done = export([*argv, "-o", str(tmp_path / "c.csv")], page_rows=3)
    closes = pd.read_csv(tmp_path / "c.csv", dtype=str)["time"]
    assert (closes.iloc[0], closes.iloc[-1]) == (
        pd.Timestamp(first).isoformat(),
        pd.Timestamp(last).isoformat(),
    )
    length = pd.Timedelta(LENGTHS[timeframe])
    assert done.rows == (pd.Timestamp(last) - pd.Timestamp(first)) / length + 1  # every close, no hole


@pytest.mark.parametrize(
    "argv",
    [
        ["--trades", "--start", "2019-10-11T00:00:11.621Z", "--end", "2019-10-11T00:00:11.622Z"],
        ["--timeframe", "1m", "--start", "2019-10-12T00:00:30Z", "--end", "2019-10-12T00:01:20Z"],
        ["--timeframe", "1h", "--start", "2030-01-01"],
    ],
)
def test_an_empty_range_writes_the_header_or_schema_only(
    env: Loaded, tmp_path: Path, argv: list[str]
) -> None:
    err = StringIO()
    done = export(["--symbol", "XRP-ETH", *argv, "-o", str(tmp_path / "e.csv")], err=err)
    assert done.rows == 0 and done.span is None
    frame = pd.read_csv(tmp_path / "e.csv")
    assert frame.empty and "time" in frame.columns and "symbol" in frame.columns
    assert "export: 0 " in err.getvalue() and "none in the range" in err.getvalue()
    export(["--symbol", "XRP-ETH", *argv, "-o", str(tmp_path / "e.parquet")])
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 0 and table.schema.field("time").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize(
    ("argv", "flag", "fix"),
    [
        (["--symbol", "NO-SUCH", "--timeframe", "1m"], "--symbol NO-SUCH", "Stored okx symbols: XRP-ETH."),
        (["--symbol", "NO-SUCH", "--trades"], "--symbol NO-SUCH", "Stored okx symbols: XRP-ETH."),
        (
            ["--exchange", "binance", "--symbol", "XRP-ETH", "--trades"],
            "--exchange binance",
            "Check --exchange",
        ),
    ],
)
def test_a_series_not_stored_stops_it_naming_the_flag(
    env: Loaded, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], flag: str, fix: str
) -> None:
    assert main([*argv, "-o", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {flag}") and fix in err[1]
    assert not list(tmp_path.glob("x.csv*")), "no file, not even a partial one"


def test_csv_to_standard_output(env: Loaded, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--symbol", "XRP-ETH", "--timeframe", "4h", "--end", "2019-10-12", "-o", "-"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    names, rows = oracle(env.url, CANDLE_SQL, tf="4h", length=LENGTHS["4h"], end=DAY)
    assert captured.out.splitlines() == [
        ",".join(names),
        *(",".join(r) for r in csv_text(rows, trades=False)),
    ]
    assert "-> standard output" in captured.err


def test_a_reader_that_stops_reading_standard_output_ends_it_quietly(env: Loaded) -> None:
    argv = [sys.executable, "-m", "app.export", "--symbol", "XRP-ETH", "--trades", "-o", "-"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT) as child:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline().startswith(b"exchange,symbol,trade_id,time,")
        child.stdout.close()  # as ``| head -1`` does; the export has about 1 MB more to write
        err = child.stderr.read().decode()
        assert child.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "error" not in err
