"""The replay's progress on stderr: a redrawn bar on a terminal, otherwise a line every few seconds
(``replay: 6,000/12,477 trades (48%), 1,234 trades/s, ETA 0:00:05``). In a cluster only process 0
prints, counting the rows the other processes report; they only report (``flows.replay``)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from connectors.cluster_board import ClusterBoard
from connectors.replay import TapeSource
from flows.placement import ClusterPlace, cluster_place, cluster_port

PROGRESS_EVERY = 5.0
"""Seconds between progress lines when stderr is not a terminal."""
REDRAW_EVERY = 0.5
"""Seconds between redraws of the progress bar on a terminal."""


def duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def progress_line(done: int, total: int, elapsed: float, bar_width: int = 0) -> str:
    """``replay: 6,000/12,477 trades (48%), 1,234 trades/s, ETA 0:00:05``, with a bar if ``bar_width``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    share = min(done / total, 1.0) if total else 1.0
    eta = duration((total - done) / rate) if rate > 0 and total > done else ("0:00:00" if share == 1 else "?")
    bar = ""
    if bar_width:
        filled = int(share * bar_width)
        bar = "[" + "#" * filled + "-" * (bar_width - filled) + "] "
    return f"replay: {bar}{done:,}/{total:,} trades ({share:.0%}), {rate:,.0f} trades/s, ETA {eta}"


class ReplayProgress:
    """Prints the replay's progress to ``stream`` from a background thread until :meth:`stop`. In a
    cluster, process 0 counts the rows the others report on ``cluster``, and the others only report."""

    def __init__(
        self,
        source: TapeSource,
        stream: TextIO | None = None,
        every: float | None = None,
        cluster: ClusterBoard | None = None,
    ) -> None:
        self.source = source
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.cluster = cluster
        self.reporting = cluster is not None and cluster.process != 0
        self.every = every or (REDRAW_EVERY if self.tty and not self.reporting else PROGRESS_EVERY)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._drawing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="replay-progress", daemon=True)

    def start(self, place: ClusterPlace | None = None) -> ReplayProgress:
        """Start printing; in a cluster, first meet the processes before this one
        (``ClusterBoard.meet``: they listen before this process connects to them)."""
        if self.cluster is not None:
            place = place or cluster_place()
            self.cluster.meet(cluster_port(place))
        self._thread.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rows_read(self) -> int:
        """Rows read by this process, and in a cluster's process 0 also by the others."""
        others = self.cluster.others_read() if self.cluster is not None and not self.reporting else 0
        return self.source.rows_read + others

    def draw(self, final: bool = False) -> None:
        if self.cluster is not None and self.reporting:
            self.cluster.report_progress(self.source.rows_read)
            return
        line = progress_line(
            self.rows_read(), self.source.total_rows, self.elapsed(), bar_width=30 if self.tty else 0
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
