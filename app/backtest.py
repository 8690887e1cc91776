"""``python3 tcp.py backtest`` (also ``python -m flows.backtest``): backtest strategies on the live
dataflow over stored candles or trades, or over tapes, store each run and report it
(docs/backtest.md, "Running a backtest").

    python3 tcp.py backtest --symbol BTC-USDT --timeframe 1m --strategy ema_crossover --param fast=9
    python3 tcp.py backtest --tapes tests/data/tapes/XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv \\
        --config backtest.yaml --json run.json --report run.html

The database is the one ``up`` and the flows use (``DATABASE_URL``, else the embedded server). A bad
flag stops the command at the start with one line naming it and the fix (exit code 2).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from app.backtest_output import (
    BacktestProgress,
    RunOutput,
    code_version,
    run_config,
    summary_table,
    timings_line,
    write_json,
    write_reports,
)
from app.backtest_source import BacktestInput, open_input
from configs.backtest import AccountSection, BacktestConfig, load_backtest_config
from configs.errors import UserError, run_cli
from flows.backtest import RunResult, Timings, run_backtest
from market.backtest import AccountSettings, compute_metrics
from market.timeframes import TIMEFRAMES

SOURCES = ("candles", "trades")
CHECKS = ("lookahead", "warmup")


@dataclass(frozen=True)
class BacktestOptions:
    """A backtest command, its flags validated."""

    exchange: str
    symbol: str | None
    timeframe: str
    start: datetime | None
    end: datetime | None
    source: str  # candles | trades | tapes
    tapes: list[Path]
    config: BacktestConfig
    account: AccountSection
    json: Path | None = None
    report: Path | None = None
    store: bool = True
    check: str | None = None
    described: dict[str, Any] = field(default_factory=dict)
    """What the stored ``config`` records of the command (source, range, tapes)."""

    @property
    def settings(self) -> AccountSettings:
        a = self.account
        return AccountSettings.from_bps(a.cash, a.fraction, a.fee_bps, a.slippage_bps, a.short)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 tcp.py backtest", description=__doc__.splitlines()[0].strip("`")
    )
    data = p.add_argument_group("data")
    data.add_argument("--exchange", default="okx", help="exchange of the stored series (default: okx)")
    data.add_argument("--symbol", help="instrument, e.g. BTC-USDT (with --tapes: default every instrument)")
    data.add_argument("--timeframe", default="1m", help=f"one of {', '.join(TIMEFRAMES)} (default: 1m)")
    data.add_argument("--start", help="first candle's open, ISO 8601 (a time without zone is UTC)")
    data.add_argument("--end", help="last candle's close at or before this, ISO 8601")
    data.add_argument("--source", choices=SOURCES, default="candles", help="stored candles or trades")
    data.add_argument("--tapes", nargs="+", type=Path, metavar="TAPE", help="OKX trade tapes instead")
    strategy = p.add_argument_group("strategy")
    strategy.add_argument("--config", type=Path, help="YAML: the indicators schema plus an account section")
    strategy.add_argument("--strategy", help="a strategy by name (instead of --config)")
    strategy.add_argument("--param", action="append", default=[], metavar="K=V", help="strategy parameter")
    account = p.add_argument_group("account (overrides the file's account section)")
    account.add_argument("--cash", type=float, help="starting cash, quote currency (default 10000)")
    account.add_argument("--fraction", type=float, help="of cash committed per entry (default 1.0)")
    account.add_argument("--fee-bps", type=float, help="fee per fill in basis points (default 10)")
    account.add_argument("--slippage-bps", type=float, help="slippage in basis points (default 0)")
    account.add_argument("--short", action="store_true", default=None, help="sell signals open shorts")
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="PATH", help="write the runs as JSON")
    out.add_argument("--report", type=Path, metavar="PATH.html", help="write a standalone HTML report")
    out.add_argument("--no-store", action="store_true", help="do not store the runs in the database")
    out.add_argument("--check", choices=CHECKS, help="run an honesty check instead (docs/backtest.md)")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    return p


def parse_time(text: str | None, flag: str) -> datetime | None:
    """An ISO 8601 date or time; without a zone it is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"{flag}: {text!r} is not an ISO 8601 time.", f"Write e.g. {flag} 2024-08-09T00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _param_value(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def strategy_config(name: str, params: list[str], timeframe: str) -> dict[str, Any]:
    """The indicators schema of one strategy from ``--strategy NAME --param k=v ...``."""
    values: dict[str, int | float] = {}
    for item in params:
        key, sep, raw = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            values[key.strip()] = _param_value(raw.strip())
        except ValueError:
            raise UserError(f"--param {item!r}: not NAME=NUMBER.", "Write e.g. --param fast=9") from None
    return {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": [timeframe],
                "strategies": [{"strategy": name, "params": values}],
            }
        ]
    }


def load_config(args: argparse.Namespace) -> BacktestConfig:
    """The strategies and account of ``--config`` or of ``--strategy``/``--param``."""
    from pydantic import ValidationError

    from configs.backtest import parse_backtest_config
    from configs.settings import describe_validation_error

    if args.config is not None and args.strategy is not None:
        raise UserError("--config and --strategy both given.", "Name the strategies in one place.")
    if args.config is None and args.strategy is None:
        raise UserError(
            "no strategy to test: --strategy or --config is missing.",
            "Name one with --strategy NAME [--param K=V ...] or --config FILE.",
        )
    if args.param and args.strategy is None:
        raise UserError("--param without --strategy.", "Parameters of a --config file go in the file.")
    try:
        if args.config is not None:
            return load_backtest_config(args.config)
        return parse_backtest_config(strategy_config(args.strategy, args.param, args.timeframe))
    except ValidationError as error:
        if args.config is not None:
            what = f"backtest configuration {args.config}"
            raise UserError(
                describe_validation_error(error, what), "Fix it there (docs/backtest.md)."
            ) from None
        first = error.errors()[0]
        flag = "--param" if "params" in first["loc"] else "--strategy"
        reason = first["msg"].removeprefix("Value error, ")
        raise UserError(
            f"{flag}: {reason}.", "See docs/indicators.md for the strategies and parameters."
        ) from None
    except OSError as error:
        raise UserError(
            f"--config {args.config}: {error.strerror or error}.", "Name a readable YAML file."
        ) from None
    except ValueError as error:  # YAML syntax
        raise UserError(f"--config {args.config}: {error}", "Fix the YAML there.") from None


def account_section(args: argparse.Namespace, config: BacktestConfig) -> AccountSection:
    from pydantic import ValidationError

    flags = {"cash": args.cash, "fraction": args.fraction, "fee_bps": args.fee_bps}
    flags |= {"slippage_bps": args.slippage_bps, "short": args.short}
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return AccountSection.model_validate(config.account.model_dump() | given)
    except ValidationError as error:
        first = error.errors()[0]
        key = str(first["loc"][0])
        flag = f"--{key.replace('_', '-')}" if key in given else f"account.{key} of {args.config}"
        reason = first["msg"].removeprefix("Value error, ")
        raise UserError(
            f"{flag}: {reason} (got {first.get('input')!r}).", "See python3 tcp.py backtest --help."
        ) from None


def options(argv: list[str]) -> BacktestOptions:
    args = parser().parse_args(argv)
    if args.timeframe not in TIMEFRAMES:
        raise UserError(
            f"--timeframe {args.timeframe!r} is not a timeframe.", f"Use one of {', '.join(TIMEFRAMES)}."
        )
    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    if start is not None and end is not None and end <= start:
        raise UserError("--end is not after --start.", "Give a range that holds at least one candle.")
    if args.tapes is None and args.symbol is None:
        raise UserError("--symbol is missing: which stored series to test?", "Add e.g. --symbol BTC-USDT.")
    config = load_config(args)
    source = "tapes" if args.tapes is not None else args.source
    return BacktestOptions(
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        start=start,
        end=end,
        source=source,
        tapes=list(args.tapes or []),
        config=config,
        account=account_section(args, config),
        json=args.json,
        report=args.report,
        store=not args.no_store,
        check=args.check,
    )


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused: a backtest allocates millions of acyclic objects (candles, equity
    points), and the collector's repeated scans of them took about a fifth of the run's CPU (the cyclic
    garbage a run leaves is a few hundred objects, collected when it is resumed)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def backtest(
    opts: BacktestOptions, err: TextIO, keep_candles: bool
) -> tuple[BacktestInput, list[RunResult], Timings]:
    """Run the backtest flow over the options' data, with the progress bar on ``err``."""
    data = open_input(opts)
    timings = Timings()
    with BacktestProgress(data.share, err) as progress, _no_cycle_collection():
        results = run_backtest(
            data.source,
            opts.config.indicators(),
            opts.settings,
            timings,
            trades=data.candle_config,
            timeframe=opts.timeframe,
            start=opts.start,
            symbol=opts.symbol,
            keep_candles=keep_candles,
            progress=progress.add,
        )
    results = [r for r in results if r.first_candle is not None]
    if not results:
        raise UserError(
            f"no {opts.timeframe} candle of {opts.symbol or 'the tapes'} with a strategy configured for it.",
            "Check --symbol, --timeframe, --start/--end and the strategies' timeframes.",
        )
    return data, results, timings


def run(opts: BacktestOptions, out: TextIO | None = None, err: TextIO | None = None) -> list[RunOutput]:
    """Run the backtest, store, print and write what the options ask for; the runs."""
    out, err = out or sys.stdout, err or sys.stderr
    data, results, timings = backtest(opts, err, keep_candles=opts.report is not None)
    started = time.perf_counter()
    with _no_cycle_collection():
        runs = [_measured(opts, data, result) for result in results]
    timings.accounting += time.perf_counter() - started  # the metrics count as accounting
    if opts.store:
        _store(opts, runs, data.database_url(), timings)
    for run_ in runs:
        run_.timings = timings.as_dict()
    print(summary_table(runs), file=out)
    candles = sum(
        len(r.result.equity) for r in {(r.result.exchange, r.result.symbol): r for r in runs}.values()
    )
    print(timings_line(timings.as_dict(), candles), file=out)
    if opts.json is not None:
        write_json(opts.json, runs)
        print(f"JSON: {opts.json}", file=out)
    if opts.report is not None:
        for path in write_reports(opts.report, runs):
            print(f"report: {path}", file=out)
    return runs


def check(opts: BacktestOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``--check lookahead|warmup`` over each series' candles (``app.backtest_checks``); 0 when it passes."""
    from app.backtest_checks import run_check

    out, err = out or sys.stdout, err or sys.stderr
    assert opts.check is not None
    _, results, _ = backtest(opts, err, keep_candles=True)
    code = 0
    for result in {(r.exchange, r.symbol, r.timeframe): r for r in results}.values():
        print(f"{result.exchange} {result.symbol} {result.timeframe}:", file=out)
        code |= run_check(
            opts.check, result.candles, opts.config.indicators(), write=lambda line: print(line, file=out)
        )
    return code


def _measured(opts: BacktestOptions, data: BacktestInput, result: RunResult) -> RunOutput:
    assert result.first_candle is not None
    metrics = compute_metrics(
        result.equity, result.trades, opts.settings, result.timeframe, float(result.first_candle.open)
    )
    return RunOutput(result, metrics, run_config(opts, data, result))


def _store(opts: BacktestOptions, runs: list[RunOutput], url: str, timings: Timings) -> None:
    import psycopg

    from connectors.backtest_store import StoredRun, write_run

    started = time.perf_counter()
    version_ = code_version()
    for run_ in runs:
        r = run_.result
        assert r.first_candle is not None and r.last_candle is not None
        stored = StoredRun(
            r.exchange,
            r.symbol,
            r.timeframe,
            r.strategy,
            opts.source,
            r.first_candle.open_time,
            r.last_candle.close_time,
            len(r.equity),
            run_.config,
            version_,
            run_.metrics,
            r.trades,
            r.equity,
        )
        try:
            run_.run_id = write_run(url, stored)
        except psycopg.errors.UndefinedTable:
            raise UserError(
                "the database has no backtest tables (backtest_runs): its schema is older than this code.",
                "Run python3 tcp.py migrate (or use --no-store).",
            ) from None
    timings.write += time.perf_counter() - started


def _main(argv: list[str]) -> int:
    opts = options(argv)
    if opts.check is not None:
        return check(opts)
    run(opts)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_cli(lambda: _main(argv), debug="--debug" in argv)


if __name__ == "__main__":
    sys.exit(main())
