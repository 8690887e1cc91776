"""What a backtest command shows and writes: the progress bar, the summary table, the JSON document and
the standalone report (docs/backtest.md, "Running a backtest" and "JSON output")."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flows.backtest import RunResult
from flows.replay_progress import PROGRESS_EVERY, REDRAW_EVERY, duration
from market.backtest import METRICS, BacktestTrade, format_metric

if TYPE_CHECKING:
    from app.backtest import BacktestOptions
    from app.backtest_source import BacktestInput

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunOutput:
    """One run as the command reports it: its result, metrics, stored id and configuration."""

    result: RunResult
    metrics: dict[str, Any]
    config: dict[str, Any]
    run_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def title(self) -> str:
        r = self.result
        return f"{r.strategy} on {r.exchange} {r.symbol} {r.timeframe}"


def trade_dict(trade: BacktestTrade) -> dict[str, Any]:
    """A trade as JSON: times ISO 8601 UTC, ``null`` exit while open."""
    return {
        "entry_time": trade.entry_time.isoformat(),
        "entry_price": trade.entry_price,
        "exit_time": trade.exit_time.isoformat() if trade.exit_time is not None else None,
        "exit_price": trade.exit_price,
        "quantity": trade.quantity,
        "pnl": trade.pnl,
        "fees": trade.fees,
        "side": trade.side,
        "open": trade.open,
    }


def run_dict(run: RunOutput) -> dict[str, Any]:
    r = run.result
    return {
        "run_id": run.run_id,
        "exchange": r.exchange,
        "symbol": r.symbol,
        "timeframe": r.timeframe,
        "strategy": r.strategy,
        "config": run.config,
        "metrics": run.metrics,
        "trades": [trade_dict(t) for t in r.trades],
        "timings": run.timings,
    }


def json_document(runs: Sequence[RunOutput]) -> dict[str, Any]:
    """``{"runs": [...]}``, and with exactly one run also its ``metrics`` and ``trades`` at the top."""
    listed = [run_dict(run) for run in runs]
    document: dict[str, Any] = {"runs": listed}
    if len(listed) == 1:
        document["metrics"] = listed[0]["metrics"]
        document["trades"] = listed[0]["trades"]
    return document


def write_json(path: Path, runs: Sequence[RunOutput]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_document(runs), indent=2) + "\n", encoding="utf-8")


def summary_table(runs: Sequence[RunOutput]) -> str:
    """Every metric (rows) of every run (columns), formatted for people."""
    heads = [f"#{run.run_id}" if run.run_id is not None else f"run {i + 1}" for i, run in enumerate(runs)]
    rows = [("", heads), ("strategy", [run.result.strategy for run in runs])]
    rows.append(("series", [f"{r.result.exchange} {r.result.symbol} {r.result.timeframe}" for r in runs]))
    rows += [
        (label, [format_metric(key, run.metrics.get(key)) for run in runs])
        for key, (label, _) in METRICS.items()
    ]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(cells[i]) for _, cells in rows) for i in range(len(runs))]
    return "\n".join(
        f"{label:<{label_width}}  " + "  ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths, strict=True))
        for label, cells in rows
    )


def timings_line(timings: Mapping[str, float], candles: int) -> str:
    total = sum(timings.values())
    rate = candles / total if total > 0 else 0.0
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
    return f"time: {total:.2f} s ({parts}); {candles:,} candles, {rate:,.0f} candles/s"


def report_paths(path: Path, runs: Sequence[RunOutput]) -> list[Path]:
    """``path`` for a single run; otherwise one file per run next to it (``stem-strategy-symbol-tf``)."""
    if len(runs) == 1:
        return [path]
    return [
        path.with_name(f"{path.stem}-{r.result.strategy}-{r.result.symbol}-{r.result.timeframe}{path.suffix}")
        for r in runs
    ]


def write_reports(path: Path, runs: Sequence[RunOutput]) -> list[Path]:
    """The standalone HTML report of each run (``dashboards.backtest_report``); the files written."""
    import pandas as pd

    from dashboards.backtest_report import BacktestView, write_report

    paths = report_paths(path, runs)
    for run, target in zip(runs, paths, strict=True):
        r = run.result
        candles = pd.DataFrame(
            {
                "time": pd.to_datetime([c.close_time for c in r.candles], utc=True),
                **{
                    name: [float(getattr(c, name)) for c in r.candles]
                    for name in ("open", "high", "low", "close", "volume")
                },
            }
        )
        curve = r.equity
        equity = pd.DataFrame(
            {
                "time": pd.to_datetime(curve.times, utc=True),
                "close": curve.closes,
                "cash": curve.cash,
                "position": curve.positions,
                "equity": curve.equity,
            }
        )
        trades = [trade_dict(t) for t in r.trades]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_report(target, BacktestView(run.title, candles, equity, trades, run.metrics, run.config))
    return paths


def code_version() -> str:
    """The package version, and the git commit of the checkout when there is one."""
    try:
        package = version("tcp-dashboard")
    except PackageNotFoundError:
        package = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{package}+{commit}" if commit else package


def run_config(opts: BacktestOptions, data: BacktestInput, result: RunResult) -> dict[str, Any]:
    """What ``backtest_runs.config`` records: the strategy, its parameters, the account and the data."""
    entry = next(
        (
            s
            for profile in opts.config.profiles
            if profile.applies_to(result.symbol, result.timeframe)
            for s in profile.strategies
            if s.key == result.strategy
        ),
        None,
    )
    return {
        "strategy": entry.strategy if entry is not None else result.strategy,
        "label": result.strategy,
        "params": dict(entry.params) if entry is not None else {},
        "account": opts.account.model_dump(),
        **data.described,
    }


class BacktestProgress:
    """``backtest: [####------] 40%, 210,240 candles, 95,000 candles/s, ETA 0:00:03`` on ``stream``:
    redrawn on a terminal, a line every few seconds otherwise. ``share()`` says how far the input is;
    ``label`` and ``unit`` name the command and what it counts (``export: ... trades``)."""

    def __init__(
        self,
        share: Callable[[], float],
        stream: TextIO | None = None,
        label: str = "backtest",
        unit: str = "candles",
    ) -> None:
        self.share = share
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = REDRAW_EVERY if self.tty else PROGRESS_EVERY
        self.candles = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backtest-progress", daemon=True)

    def __enter__(self) -> BacktestProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.draw(final=True)

    def add(self, candles: int) -> None:
        self.candles += candles

    def line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.started
        share = 1.0 if final else min(max(self.share(), 0.0), 1.0)
        rate = self.candles / elapsed if elapsed > 0 else 0.0
        eta = duration(elapsed * (1 - share) / share) if share > 0 else "?"
        bar = "[" + "#" * int(share * 30) + "-" * (30 - int(share * 30)) + "] " if self.tty else ""
        count = f"{self.candles:,} {self.unit}, {rate:,.0f} {self.unit}/s"
        return f"{self.label}: {bar}{share:.0%}, {count}, ETA {eta}"

    def draw(self, final: bool = False) -> None:
        line = self.line(final)
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.draw()
