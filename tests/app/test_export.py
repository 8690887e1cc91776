"""``python3 tcp.py export``'s flags: what they mean once validated, and a bad one stops the command
before any database is touched, naming the flag and the fix (exit code 2). The exports themselves are
tested against the database in tests/sql/test_export.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.export import main, options
from tests.conftest import REPO_ROOT


def test_flags_name_the_series_range_format_and_file(tmp_path: Path) -> None:
    target = tmp_path / "rows.parquet"
    argv = [
        "--symbol",
        "BTC-USDT",
        "--timeframe",
        "5m",
        "--start",
        "2024-08-09",
        "--end",
        "2024-08-09T06:00+02:00",
    ]
    opts = options([*argv, "-o", str(target)])
    s = opts.series
    assert (s.exchange, s.symbol, s.timeframe) == ("okx", "BTC-USDT", "5m")
    assert (s.start, s.end) == (datetime(2024, 8, 9, tzinfo=UTC), datetime(2024, 8, 9, 4, tzinfo=UTC))
    assert (opts.format, opts.output) == ("parquet", target)  # the format follows the file's suffix
    trades = options(["--exchange", "binance", "--symbol", "XRP-ETH", "--trades", "--format", "parquet"])
    assert (trades.series.timeframe, trades.series.start, trades.series.end) == (None, None, None)
    assert trades.output == Path("binance-XRP-ETH-trades.parquet")
    assert options(["--symbol", "BTC-USDT", "--timeframe", "1d"]).output == Path("okx-BTC-USDT-1d.csv")
    assert options(["--symbol", "BTC-USDT", "--trades", "-o", "-"]).output is None


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--timeframe", "1m"], "--symbol"),
        (["--symbol", "BTC-USDT"], "--timeframe or --trades"),
        (["--symbol", "BTC-USDT", "--timeframe", "7m"], "--timeframe '7m'"),
        (["--symbol", "BTC-USDT", "--timeframe", "1m", "--trades"], "--trades"),
        (["--symbol", "BTC-USDT", "--trades", "--start", "yesterday"], "--start"),
        (["--symbol", "BTC-USDT", "--trades", "--end", "2024-13-01"], "--end"),
        (["--symbol", "BTC-USDT", "--trades", "--start", "2024-08-09", "--end", "2024-08-09"], "--end"),
        (["--symbol", "BTC-USDT", "--trades", "--format", "xlsx"], "--format"),
        (["--symbol", "BTC-USDT", "--trades", "--format", "parquet", "-o", "-"], "-o -"),
        (["--symbol", "BTC-USDT", "--trades", "-o", "/no/such/folder/rows.csv"], "-o /no/such/folder"),
        (["--symbol", "BTC-USDT", "--trades", "--no-such-flag"], "--no-such-flag"),
    ],
)
def test_a_bad_flag_stops_it_naming_the_flag(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a database that would refuse the connection: the command must stop before it
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: ") and names in err[0], err
    assert len(err) <= 2 and "Traceback" not in "\n".join(err)


def test_help_lists_every_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.export", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    for flag in ("--symbol", "--timeframe", "--trades", "--start", "--end", "--format", "--output"):
        assert flag in done.stdout
