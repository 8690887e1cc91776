"""``python3 tcp.py export``: a stored series' candles (right-labelled, as in SQL) or trades, written to a
CSV or parquet file (docs/export.md).

    python3 tcp.py export --symbol BTC-USDT --timeframe 1h --start 2024-08-01 --end 2024-09-01 -o aug.csv
    python3 tcp.py export --exchange okx --symbol BTC-USDT --trades --format parquet -o trades.parquet

The range is ``[start, end)``: the trades with ``start <= time < end``, the candles lying wholly in it
(open at or after ``start``, close at or before ``end``); a bound left out is the series' first or last
row. The database is the one ``up`` and the backtest use (``DATABASE_URL``, else the embedded server). A
bad flag stops the command at the start naming it and the fix (exit code 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from app.backtest import parse_time
from app.backtest_output import BacktestProgress
from configs.errors import UserError, run_cli
from connectors.export import PAGE_ROWS, ExportRange, SeriesReader, Span
from connectors.export_files import FORMATS, CsvWriter, ExportWriter, ParquetWriter
from market.timeframes import TIMEFRAMES

STDOUT = "-"
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class ExportOptions:
    """An export command, its flags validated: the series and range, the format and where to write it
    (``None``: standard output, CSV only)."""

    series: ExportRange
    format: str
    output: Path | None
    page_rows: int = PAGE_ROWS

    def described(self) -> dict[str, Any]:
        """What a parquet file's metadata records of the export."""
        s = self.series
        return {
            "exchange": s.exchange,
            "symbol": s.symbol,
            "rows": "trades" if s.timeframe is None else "candles",
            "timeframe": s.timeframe,
            "start": s.start.isoformat() if s.start else None,
            "end": s.end.isoformat() if s.end else None,
            "time": "ts_event"
            if s.timeframe is None
            else "close: the candle covers [time - timeframe, time)",
            "numbers": "exact decimal text, as stored",
        }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}.", "See python3 tcp.py export --help.")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python3 tcp.py export",
        description="Write a stored series' candles (right-labelled: time is the close) or trades to CSV or "
        "parquet. The range is [start, end): the trades with start <= time < end, the candles lying wholly "
        "in it.",
        epilog="docs/export.md",
    )
    p.add_argument("--exchange", default="okx", help="exchange of the stored series (default: okx)")
    p.add_argument("--symbol", help="instrument, e.g. BTC-USDT")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--timeframe", help=f"export candles of one of {', '.join(TIMEFRAMES)}")
    rows.add_argument("--trades", action="store_true", help="export the trades instead")
    p.add_argument("--start", help="ISO 8601, inclusive (a time without zone is UTC; default: the first row)")
    p.add_argument("--end", help="ISO 8601, exclusive for trades, the last close for candles (default: last)")
    p.add_argument(
        "--format", choices=FORMATS, help="csv or parquet (default: by the suffix of -o, else csv)"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="file to write (default: EXCHANGE-SYMBOL-TIMEFRAME.FORMAT; - for stdout)",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    return p


def options(argv: list[str]) -> ExportOptions:
    args = parser().parse_args(argv)
    if args.symbol is None:
        raise UserError("--symbol is missing: which series to export?", "Add e.g. --symbol BTC-USDT.")
    if args.timeframe is None and not args.trades:
        raise UserError(
            "--timeframe or --trades is missing: candles of which timeframe, or the trades?",
            "Add e.g. --timeframe 1m, or --trades.",
        )
    if args.timeframe is not None and args.timeframe not in TIMEFRAMES:
        raise UserError(
            f"--timeframe {args.timeframe!r} is not a timeframe.", f"Use one of {', '.join(TIMEFRAMES)}."
        )
    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    if start is not None and end is not None and end <= start:
        raise UserError("--end is not after --start.", "Give --end later than --start.")
    series = ExportRange(args.exchange, args.symbol, args.timeframe, start, end)
    output = _output(args.output, args.format, series)
    format_ = args.format or (SUFFIXES.get(output.suffix.lower(), "csv") if output else "csv")
    if output is None and format_ == "parquet":
        raise UserError(
            "-o -: parquet is not written to standard output.", "Name a file, e.g. -o rows.parquet."
        )
    return ExportOptions(series, format_, output)


def _output(given: str | None, format_: str | None, series: ExportRange) -> Path | None:
    if given == STDOUT:
        return None
    if given is None:
        name = f"{series.exchange}-{series.symbol}-{series.timeframe or 'trades'}.{format_ or 'csv'}"
        return Path(name.replace("/", "_"))
    path = Path(given)
    if path.is_dir():
        raise UserError(f"-o {given}: is a folder.", "Name the file to write, e.g. -o rows.csv.")
    if not path.parent.is_dir():
        raise UserError(f"-o {given}: the folder {path.parent} does not exist.", "Create it or name another.")
    return path


@dataclass(frozen=True)
class Exported:
    """What an export wrote: how many rows, the first and last ``time`` (None when empty), where."""

    rows: int
    span: Span | None
    output: Path | None


def run(opts: ExportOptions, out: TextIO | None = None, err: TextIO | None = None) -> Exported:
    """Export what the options name; raises ``UserError`` when the series is not stored at all."""
    from app.resources import database_url
    from configs.settings import load_settings

    err = err or sys.stderr
    url = database_url(load_settings())
    s = opts.series
    with SeriesReader(url, s, opts.page_rows) as reader:
        span = reader.span()
        if span is None and reader.span(whole=True) is None:
            raise _not_stored(s, reader.symbols())
        with _writer(opts, out or sys.stdout) as writer:
            rows = _copy(reader, span, writer, err) if span is not None else 0
    where = str(opts.output) if opts.output else "standard output"
    found = f"{span.first.isoformat()} to {span.last.isoformat()}" if span else "none in the range"
    print(f"export: {rows:,} {s.what} of {s.exchange} {s.symbol} ({found}) -> {where}", file=err, flush=True)
    return Exported(rows, span, opts.output)


def _copy(reader: SeriesReader, span: Span, writer: ExportWriter, err: TextIO) -> int:
    """Write the range's pages; the progress bar is shown once a full first page says there are more."""
    unit = "trades" if reader.series.timeframe is None else "candles"
    progress = BacktestProgress(_share(reader, span), err, label="export", unit=unit)
    rows = 0
    with ExitStack() as shown:
        for page in reader.pages(span):
            writer.write(page)
            rows += len(page)
            progress.add(len(page))
            if rows == len(page) == reader.page_rows:  # the first page, and more to come
                shown.enter_context(progress)
    return rows


def _share(reader: SeriesReader, span: Span) -> Callable[[], float]:
    length = (span.last - span.first).total_seconds()

    def share() -> float:
        reached = reader.reached
        if reached is None:
            return 0.0
        return (reached - span.first).total_seconds() / length if length > 0 else 1.0

    return share


def _not_stored(series: ExportRange, symbols: list[str]) -> UserError:
    if not symbols:
        return UserError(
            f"--exchange {series.exchange}: nothing of {series.exchange} is stored.",
            "Check --exchange (e.g. okx), or replay a tape or run the live flow first.",
        )
    return UserError(
        f"--symbol {series.symbol}: no stored {series.what} of {series.exchange} {series.symbol}.",
        f"Stored {series.exchange} symbols: {', '.join(symbols)}.",
    )


@contextmanager
def _writer(opts: ExportOptions, stdout: TextIO) -> Iterator[ExportWriter]:
    """The format's writer on the output; a file is written beside it and renamed into place once whole,
    so a failed export leaves no partial file under the name asked."""
    columns = opts.series.columns()
    timespec = "microseconds" if opts.series.timeframe is None else "auto"
    if opts.output is None:
        yield CsvWriter(stdout, columns, timespec)
        stdout.flush()
        return
    partial = opts.output.with_name(opts.output.name + ".partial")
    try:
        with open(partial, "w" if opts.format == "csv" else "wb", **_text(opts.format)) as stream:
            writer: ExportWriter = (
                CsvWriter(stream, columns, timespec)
                if opts.format == "csv"
                else ParquetWriter(stream, columns, opts.described())
            )
            yield writer
            writer.close()
        os.replace(partial, opts.output)
    finally:
        partial.unlink(missing_ok=True)


def _text(format_: str) -> dict[str, Any]:
    return {"newline": "", "encoding": "utf-8"} if format_ == "csv" else {}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def export() -> int:
        try:
            run(options(argv))
        except BrokenPipeError:  # standard output's reader stopped reading (``-o - | head``): done
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0

    return run_cli(export, debug="--debug" in argv)


if __name__ == "__main__":
    sys.exit(main())
