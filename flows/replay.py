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

As a cluster (``-i``/``-a``, docs/scaling.md) each process reads the tapes of the instruments whose
candles its workers build (so no trade crosses between processes) and writes what its workers hold;
only process 0 prints progress (all processes' rows, as the others report them through a
:class:`~connectors.cluster_board.ClusterBoard`), and only once every other process has reported that
it has written everything does process 0 refresh the rollups over the whole cluster's range and print
the one summary of the whole cluster, so it exits after all processes wrote.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from configs.errors import UserError
from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from connectors.cluster_board import MAX_PAYLOAD, ClusterBoard
from connectors.database import DatabaseSink, StoredItem, WriterStats
from connectors.replay import TapeSource
from connectors.tape import TapeSummary
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.placement import ClusterPlace, cluster_place
from flows.replay_progress import PROGRESS_EVERY, REDRAW_EVERY, ReplayProgress, duration, progress_line
from market.types import Candle, IndicatorValue, Rejected, Signal
from market.windowing import LateTrade

TABLES = ("trades", "candles_1m", "late_trades", "rejects", "indicators", "signals")
CLUSTER_WAIT = 600.0
"""Seconds process 0 waits, once its own rows are written, for the other processes to report theirs."""


__all__ = [
    "PROGRESS_EVERY",
    "REDRAW_EVERY",
    "TABLES",
    "ReplayDatabaseSink",
    "ReplayProgress",
    "progress_line",
    "replay_flow",
    "summary_lines",
    "tape_source",
]


def tape_source(
    settings: Settings, place: ClusterPlace | None = None, scanned: Sequence[TapeSummary] | None = None
) -> TapeSource:
    """The replay's source over ``REPLAY_TAPES``; raises ``UserError`` when it names no tape. In a
    cluster (``place``, default: as ``bytewax.run`` started this process) the process reads the tapes
    of the instruments whose candles its workers build (``flows.placement``). ``scanned``: the tapes'
    summaries if they were already read (``app.resources.check_tapes``), in the order of the tapes."""
    if not settings.replay_tapes:
        raise UserError(
            "REPLAY_TAPES is empty: there is nothing to replay.",
            "Name one or more OKX archive CSV tapes, comma-separated (bundled ones: tests/data/tapes).",
        )
    place = place or cluster_place()
    builds = place.builds if place.clustered else None
    return TapeSource(settings.replay_tapes, until=settings.replay_end, builds=builds, scanned=scanned)


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
        f"Replay done in {duration(elapsed)} ({elapsed:.1f} s): {rows_read:,} rows read from "
        f"{tapes} tape(s); rows written:"
    ]
    lines += [f"  {table:<12}{written[table][0]:>12,}{written[table][1]}" for table in TABLES]
    if stats.batches_spooled:
        lines.append(
            f"  {stats.batches_spooled} batch(es) spooled: the database was not reachable; they are "
            "written at the next start"
        )
    return lines


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

    def message(self) -> dict[str, object]:
        """What another process of a cluster reports to process 0: its counters and merged ranges (one
        range from the first to the last if the ranges would not fit in a report)."""
        with self.lock:
            counters = {name: value for name, value in vars(self.stats).items() if isinstance(value, int)}
            rows = dict(self.rows)
        ranges = [(low.isoformat(), high.isoformat()) for low, high in self.ranges()]
        message: dict[str, object] = {"stats": counters, "rows": rows, "ranges": ranges}
        if len(json.dumps(message)) > MAX_PAYLOAD - 200 and ranges:
            message["ranges"] = [(ranges[0][0], max(high for _, high in ranges))]
        return message

    def merge(self, message: Mapping[str, Any], process: int) -> None:
        """Count in what another process of the cluster wrote (its :meth:`message`)."""
        with self.lock:
            for name, value in dict(message.get("stats", {})).items():
                setattr(self.stats, name, getattr(self.stats, name, 0) + int(value))
            for table, value in dict(message.get("rows", {})).items():
                self.rows[table] = self.rows.get(table, 0) + int(value)
            for index, (low, high) in enumerate(message.get("ranges", [])):
                self.spans[f"process {process} #{index}"] = (
                    datetime.fromisoformat(low),
                    datetime.fromisoformat(high),
                )

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


def _missing(missing: list[int]) -> str:
    if not missing:
        return ""
    return (
        f"; not heard from process {', '.join(map(str, missing))}: its rows are not counted here and the "
        "rollups may not cover them (python -m sql.policies --refresh-all brings them up to date)"
    )


class ReplayDatabaseSink(DynamicSink[StoredItem]):
    """The database sink of a replay: writes through ``DatabaseSink`` and, once the last partition of this
    process has closed (everything written), makes the rollups cover the 1m candles written and prints
    the summary. In a cluster (``cluster``), the other processes report their tally to process 0 instead,
    which waits for all of them (up to ``wait`` seconds) and then does both once for the whole cluster."""

    def __init__(
        self,
        inner: DatabaseSink,
        source: TapeSource,
        progress: ReplayProgress | None = None,
        out: TextIO | None = None,
        cluster: ClusterBoard | None = None,
        wait: float = CLUSTER_WAIT,
    ) -> None:
        self.inner = inner
        self.source = source
        self.progress = progress
        self.out = out
        self.cluster = cluster
        self.wait = wait
        self.tally = _Tally()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TalliedPartition:
        inner = self.inner.build(step_id, worker_index, worker_count)
        with self.tally.lock:
            self.tally.open_partitions += 1
        return _TalliedPartition(self, inner, inner.writer.stats)

    def finished(self) -> None:
        cluster = self.cluster
        if cluster is not None and cluster.process != 0:
            self._report(cluster)
            return
        rows_read = self.source.rows_read
        missing: list[int] = []
        if cluster is not None:
            reports, missing = cluster.wait_for_others(self.wait)
            for report in reports:
                self.tally.merge(report, int(report.get("process", -1)))
            rows_read += cluster.others_read()
        if self.progress is not None:
            self.progress.stop()
        elapsed = self.progress.elapsed() if self.progress is not None else 0.0
        lines = summary_lines(
            self.tally.stats,
            self.tally.rows,
            elapsed,
            rows_read,
            sum(len(group) for group in self.source.groups),
        )
        if cluster is not None:
            lines.append(f"  written by {cluster.processes} processes{_missing(missing)}")
        lines += self._refresh()
        print("\n".join(lines), file=self.out or sys.stdout, flush=True)
        if cluster is not None:
            cluster.close()

    def _report(self, cluster: ClusterBoard) -> None:
        """Another process than 0 of a cluster: tell process 0 this process has written everything."""
        if self.progress is not None:
            self.progress.stop()
        message = {**self.tally.message(), "process": cluster.process}
        told = cluster.report_done(self.source.rows_read, message)
        where = "process 0 prints the summary" if told else "process 0 could not be told (see the log)"
        print(
            f"replay: process {cluster.process} of {cluster.processes} wrote its share "
            f"({self.source.rows_read:,} rows read); {where}",
            file=sys.stderr,
            flush=True,
        )
        cluster.close()

    def _refresh(self) -> list[str]:
        """Bring the rollups up to date over the 1m candles written; the summary's lines about it."""
        import psycopg

        from sql.policies import refresh_after_load

        ranges = self.tally.ranges()
        if not ranges:
            return []
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
        except psycopg.Error as error:
            return [
                f"  rollups not refreshed ({type(error).__name__}: {error}); run "
                "python -m sql.policies --refresh-all"
            ]
        return [
            f"  candles_5m .. candles_1d cover the 1m candles closing {span} UTC "
            f"(rollups refreshed in {time.monotonic() - started:.1f} s)"
        ]


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access (by ``bytewax.run``, in app/entrypoints.py), so importing this
    module has no effects."""
    if name != "flow":
        raise AttributeError(name)
    from app.entrypoints import replay_dataflow  # the one import of app below it (app/__init__.py)

    return replay_dataflow()
