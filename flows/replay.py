"""Replay recorded tapes through the same dataflow as the live flow.

    REPLAY_TAPES=tests/data/tapes/XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv \\
        python -m bytewax.run flows.replay

Tapes are read in their row (arrival) order, sorted archives and out-of-order recordings alike; the
watermark follows that order as it does live, so trades out of order within the grace are folded in
and those beyond it are late. Writes to the same tables as the live flow (bad rows to ``rejects``) and
exits at the end of the tapes; windows closing after the declared end (``REPLAY_END``, default: the
tapes' latest trade time) are incomplete and not emitted. A file that is not a tape stops it at the
start with one line naming the file and the problem.

While it runs, progress goes to stderr: a redrawn bar (trades done/total, trades/s, ETA) on a terminal,
otherwise one line every 5 s. When the database sink has closed, the higher timeframes are made to cover
the replayed range on either engine (``sql.policies.refresh_after_load``: on TimescaleDB the continuous
aggregates are refreshed over it, however old), and a summary is printed: rows written per table and the
elapsed time. The live flow has none of this.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from configs.errors import UserError
from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from connectors.database import DatabaseSink, StoredItem, WriterStats
from connectors.replay import TapeSource
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.types import Candle, IndicatorValue, Rejected, Signal
from market.windowing import LateTrade

PROGRESS_EVERY = 5.0
"""Seconds between progress lines when stderr is not a terminal."""
REDRAW_EVERY = 0.5
"""Seconds between redraws of the progress bar on a terminal."""
TABLES = ("trades", "candles_1m", "late_trades", "rejects", "indicators", "signals")


def tape_source(settings: Settings) -> TapeSource:
    """The replay's source over ``REPLAY_TAPES``; raises ``UserError`` when it names no tape."""
    if not settings.replay_tapes:
        raise UserError(
            "REPLAY_TAPES is empty: there is nothing to replay.",
            "Name one or more OKX archive CSV tapes, comma-separated (bundled ones: tests/data/tapes).",
        )
    return TapeSource(settings.replay_tapes, until=settings.replay_end)


def replay_flow(
    settings: Settings,
    sinks: FlowSinks,
    indicators: IndicatorsConfig | None = None,
    source: TapeSource | None = None,
) -> Dataflow:
    source = source or tape_source(settings)
    config = CandleConfig(
        grace=settings.candle_grace,
        emit_flat=settings.emit_flat_candles,
        clock="event",
        ends=source.ends,
        contract_values=settings.contract_values,
    )
    return build_flow("replay", source, config, sinks, indicators)


# -- progress and summary -------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def progress_line(done: int, total: int, elapsed: float, bar_width: int = 0) -> str:
    """``replay: 6,000/12,477 trades (48%), 1,234 trades/s, ETA 0:00:05``, with a bar if ``bar_width``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    share = min(done / total, 1.0) if total else 1.0
    eta = (
        _duration((total - done) / rate) if rate > 0 and total > done else ("0:00:00" if share == 1 else "?")
    )
    bar = ""
    if bar_width:
        filled = int(share * bar_width)
        bar = "[" + "#" * filled + "-" * (bar_width - filled) + "] "
    return f"replay: {bar}{done:,}/{total:,} trades ({share:.0%}), {rate:,.0f} trades/s, ETA {eta}"


def summary_lines(
    stats: WriterStats, rows: Mapping[str, int], elapsed: float, rows_read: int, tapes: int
) -> list[str]:
    """The end-of-replay summary and its time: rows written per table, trades and 1m candles from the
    database sink's counters (new rows, and those already stored), the others as counted in ``rows``."""
    written = {
        "trades": (stats.trades_inserted, f" new ({stats.trades_duplicate:,} already stored)"),
        "candles_1m": (stats.candles_written, f" new ({stats.candles_duplicate:,} already stored)"),
        "late_trades": (rows["late_trades"], ""),
        "rejects": (rows["rejects"] + stats.rows_rejected, ""),
        "indicators": (rows["indicators"], ""),
        "signals": (rows["signals"], ""),
    }
    lines = [
        f"Replay done in {_duration(elapsed)} ({elapsed:.1f} s): {rows_read:,} rows read from "
        f"{tapes} tape(s); rows written:"
    ]
    lines += [f"  {table:<12}{written[table][0]:>12,}{written[table][1]}" for table in TABLES]
    if stats.batches_spooled:
        lines.append(
            f"  {stats.batches_spooled} batch(es) spooled: the database was not reachable; they are "
            "written at the next start"
        )
    return lines


class ReplayProgress:
    """Prints the replay's progress to ``stream`` from a background thread until :meth:`stop`."""

    def __init__(self, source: TapeSource, stream: TextIO | None = None, every: float | None = None) -> None:
        self.source = source
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every or (REDRAW_EVERY if self.tty else PROGRESS_EVERY)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._drawing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="replay-progress", daemon=True)

    def start(self) -> ReplayProgress:
        self._thread.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def draw(self, final: bool = False) -> None:
        line = progress_line(
            self.source.rows_read, self.source.total_rows, self.elapsed(), bar_width=30 if self.tty else 0
        )
        with self._drawing:
            if self.tty:
                self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.draw(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.draw()


@dataclass
class _Tally:
    """What this process's database sink partitions wrote, and the range of 1m candles among it."""

    open_partitions: int = 0
    stats: WriterStats = field(default_factory=WriterStats)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    spans: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    """Per instrument, the first and last close of the 1m candles written."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, items: list[StoredItem]) -> None:
        """Count the rows of a written batch (one per indicator output) and the range of its 1m candles."""
        counts = {
            "late_trades": sum(isinstance(item, LateTrade) for item in items),
            "rejects": sum(isinstance(item, Rejected) for item in items),
            "indicators": sum(len(item.values) for item in items if isinstance(item, IndicatorValue)),
            "signals": sum(isinstance(item, Signal) for item in items),
        }
        candles = [item for item in items if isinstance(item, Candle)]
        with self.lock:
            for table, n in counts.items():
                self.rows[table] += n
            for candle in candles:
                low, high = self.spans.get(candle.symbol, (candle.close_time, candle.close_time))
                self.spans[candle.symbol] = (min(low, candle.close_time), max(high, candle.close_time))

    def ranges(self) -> list[tuple[datetime, datetime]]:
        """The instruments' spans, overlapping ones merged (years between two tapes are not refreshed)."""
        merged: list[tuple[datetime, datetime]] = []
        for low, high in sorted(self.spans.values()):
            if merged and low <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        return merged

    def add(self, stats: WriterStats) -> bool:
        """Count a closed partition's writes in; True when it was the last open one."""
        with self.lock:
            for name, value in vars(stats).items():
                if isinstance(value, int):
                    setattr(self.stats, name, getattr(self.stats, name) + value)
            self.open_partitions -= 1
            return self.open_partitions == 0


class _TalliedPartition(StatelessSinkPartition[StoredItem]):
    def __init__(
        self, sink: ReplayDatabaseSink, inner: StatelessSinkPartition[StoredItem], stats: WriterStats
    ) -> None:
        self.sink = sink
        self.inner = inner
        self.stats = stats

    def write_batch(self, items: list[StoredItem]) -> None:
        spooled = self.stats.batches_spooled
        self.inner.write_batch(items)
        if self.stats.batches_spooled == spooled:  # written now, not spooled for later
            self.sink.tally.saw(items)

    def close(self) -> None:
        self.inner.close()
        if self.sink.tally.add(self.stats):
            self.sink.finished()


class ReplayDatabaseSink(DynamicSink[StoredItem]):
    """The database sink of a replay: writes through ``DatabaseSink`` and, once the last partition of this
    process has closed (everything written), makes the rollups cover the 1m candles written and prints
    the summary."""

    def __init__(
        self,
        inner: DatabaseSink,
        source: TapeSource,
        progress: ReplayProgress | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.inner = inner
        self.source = source
        self.progress = progress
        self.out = out
        self.tally = _Tally()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TalliedPartition:
        inner = self.inner.build(step_id, worker_index, worker_count)
        with self.tally.lock:
            self.tally.open_partitions += 1
        return _TalliedPartition(self, inner, inner.writer.stats)

    def finished(self) -> None:
        import psycopg

        from sql.policies import refresh_after_load

        if self.progress is not None:
            self.progress.stop()
        elapsed = self.progress.elapsed() if self.progress is not None else 0.0
        lines = summary_lines(
            self.tally.stats,
            self.tally.rows,
            elapsed,
            self.source.rows_read,
            sum(len(group) for group in self.source.groups),
        )
        ranges = self.tally.ranges()
        if ranges:
            span = ", ".join(f"{low:%Y-%m-%d %H:%M} .. {high:%Y-%m-%d %H:%M}" for low, high in ranges)
            print(
                f"replay: bringing candles_5m .. candles_1d up to date over {span} UTC",
                file=sys.stderr,
                flush=True,
            )
            started = time.monotonic()
            try:
                with psycopg.connect(
                    self.inner.url, autocommit=True, connect_timeout=int(max(1, self.inner.connect_timeout))
                ) as conn:
                    for low, high in ranges:
                        refresh_after_load(conn, low, high)
                lines.append(
                    f"  candles_5m .. candles_1d cover the 1m candles closing {span} UTC "
                    f"(rollups refreshed in {time.monotonic() - started:.1f} s)"
                )
            except psycopg.Error as error:
                lines.append(
                    f"  rollups not refreshed ({type(error).__name__}: {error}); run "
                    "python -m sql.policies --refresh-all"
                )
        print("\n".join(lines), file=self.out or sys.stdout, flush=True)


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access (by ``bytewax.run``, in app/entrypoints.py), so importing this
    module has no effects."""
    if name != "flow":
        raise AttributeError(name)
    from app.entrypoints import replay_dataflow  # the one import of app below it (app/__init__.py)

    return replay_dataflow()
