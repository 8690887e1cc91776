"""The health page: collector status, gaps, late trades and rejects (all from the database), server status.

Collector status is read from the ``collector_health`` table (the latest snapshot of each collector, as
published on Redis), so the page works without Redis and says what the chart says: status, since when,
last error; a snapshot older than ``HEALTH_EXPIRES_AFTER`` shows as "not reporting (last seen ...)"."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import panel as pn
import param

from dashboards.collectors import CollectorState, collector_states, collectors_sentence
from dashboards.data import DashboardData, DataUnavailable


def message_rate(current: Mapping[str, Any], previous: Mapping[str, Any] | None) -> float:
    """Messages per second: over the change since the previous snapshot, else since the collector started."""
    if previous is not None and previous["time"] < current["time"]:
        span = (current["time"] - previous["time"]).total_seconds()
        return (current["messages_received"] - previous["messages_received"]) / span
    uptime = float(current.get("uptime_seconds") or 0.0)
    return current["messages_received"] / uptime if uptime > 0 else 0.0


def health_check(h: Mapping[str, Any]) -> str:
    """How the collector's health is checked: ``every 5 s, stale after 60 s`` (parts the snapshot does
    not carry are left out; the check's time is the snapshot's); ``not checked`` when no rule checked
    it."""
    if h.get("last_check_time") is None:
        return "not checked"
    interval, stale = h.get("health_check_interval_seconds"), h.get("stale_data_threshold_seconds")
    parts = [] if interval is None else [f"every {interval:.0f} s"]
    parts += [] if stale is None else [f"stale after {stale:.0f} s"]
    return ", ".join(parts) or "checked"


def collects(h: Mapping[str, Any]) -> str:
    """What the collector collects: ``trades of BTC-USDT, ETH-USDT`` (empty when the snapshot does not
    say)."""
    symbols, kinds = ", ".join(h.get("symbols") or []), ", ".join(h.get("data_types") or [])
    return f"{kinds} of {symbols}" if kinds and symbols else kinds or symbols


def _duration(seconds: float) -> str:
    """``2d 03:04:05``, ``03:04:05``."""
    days, rest = divmod(int(seconds), 86_400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def _yes_no(flag: bool | None) -> str:
    """``unknown`` for a snapshot that does not say (written before the field existed)."""
    return "unknown" if flag is None else ("yes" if flag else "no")


COLLECTOR_COLUMNS = [
    "collector",
    "collects",
    "status",
    "last error",
    "healthy",
    "auto restart",
    "uptime",
    "messages (processed)",
    "rate (msg/s)",
    "last message age (s)",
    "reconnects",
    "restarts",
    "errors",
    "health check",
    "snapshot (UTC)",
    "issues",
]


def collector_rows(
    states: Sequence[CollectorState], previous: Mapping[str, Mapping[str, Any]], now: datetime
) -> pd.DataFrame:
    """One row per collector: what it collects of which symbols, status (since when, or not reporting),
    last error, health, whether it is restarted, the statistics (uptime, messages received and
    processed, rate, last message age, reconnects, restarts, errors), how it is checked, issues."""
    rows = []
    for state in sorted(states, key=lambda s: s.collector):
        h = {**state.payload, "time": state.time}
        last = h.get("last_message_time")
        current = state.current(now)
        rows.append(
            {
                "collector": state.collector,
                "collects": collects(h),
                "status": state.describe(now, with_error=False),
                "last error": state.last_error or "none",
                "healthy": ("yes" if state.is_healthy else "NO") if current else "unknown",
                "auto restart": _yes_no(h.get("auto_restart")),
                "uptime": _duration(float(h.get("uptime_seconds") or 0.0)),
                "messages (processed)": f"{h.get('messages_received', 0)} ({h.get('messages_processed', 0)})",
                "rate (msg/s)": round(message_rate(h, previous.get(state.collector)), 2),
                "last message age (s)": "never" if last is None else f"{(now - last).total_seconds():.0f}",
                "reconnects": h.get("reconnect_attempts", 0),
                "restarts": h.get("restarts", 0),
                "errors": h.get("errors", 0),
                "health check": health_check(h),
                "snapshot (UTC)": state.time.strftime("%Y-%m-%d %H:%M:%S"),
                "issues": "; ".join(h.get("issues") or []) or "none",
            }
        )
    return pd.DataFrame(rows, columns=COLLECTOR_COLUMNS)


def gap_summary(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Gaps per series: how many, how many backfilled (filled) or not, trades recovered."""
    frame = pd.DataFrame(
        list(rows), columns=["exchange", "symbol", "filled", "trades_backfilled", "detected_at"]
    )
    grouped = frame.groupby(["exchange", "symbol"], as_index=False).agg(
        gaps=("filled", "size"),
        backfilled=("filled", "sum"),
        trades_backfilled=("trades_backfilled", "sum"),
        last_detected=("detected_at", "max"),
    )
    grouped["unfilled"] = grouped["gaps"] - grouped["backfilled"]
    return grouped[
        ["exchange", "symbol", "gaps", "backfilled", "unfilled", "trades_backfilled", "last_detected"]
    ]


def count_table(rows: Iterable[Mapping[str, Any]], keys: list[str], count: str) -> pd.DataFrame:
    """Counts summed per ``keys`` over the periods of a count query."""
    frame = pd.DataFrame(list(rows), columns=[*keys, count])
    return frame.groupby(keys, as_index=False)[count].sum().astype({count: int})


TABLE_CSS = """
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { padding: 4px 6px; text-align: right; border-bottom: 1px solid #e0e0e0; }
th { background: #eceff1; }
th:first-child, td:first-child { text-align: left; }
.tcp-table-scroll { overflow-x: auto; }
"""


def table_html(frame: pd.DataFrame, empty: str) -> str:
    """A small table (values escaped) that scrolls sideways when wider than the page, or a sentence
    saying there is nothing to show."""
    if not len(frame):
        return f"<p><i>{html.escape(empty)}</i></p>"
    table = frame.to_html(index=False, border=0, escape=True, na_rep="")
    return f'<div class="tcp-table-scroll">{table}</div>'


WINDOWS = {
    "last hour": timedelta(hours=1),
    "last 24 hours": timedelta(days=1),
    "last 7 days": timedelta(days=7),
    "all time": None,
}


class HealthView(pn.viewable.Viewer):
    """Collector health from Redis; gaps, late trades and rejects from the database; server status."""

    window: param.Selector[str] = param.Selector(
        default="last 24 hours", objects=list(WINDOWS), label="Counts over"
    )

    def __init__(self, data: DashboardData, **params: Any) -> None:
        super().__init__(**params)
        self.data = data
        self.previous: dict[str, Mapping[str, Any]] = {}
        self.states: list[CollectorState] = []
        self.status = pn.pane.HTML(css_classes=["tcp-health-status"], sizing_mode="stretch_width")
        self.collector_line = pn.pane.HTML(css_classes=["tcp-collector-line"], sizing_mode="stretch_width")
        self.collectors, self.gaps, self.late, self.rejects = (
            pn.pane.HTML(css_classes=[f"tcp-{name}"], sizing_mode="stretch_width", stylesheets=[TABLE_CSS])
            for name in ("collectors", "gaps", "late", "rejects")
        )
        self.param.watch(lambda _: self.refresh(), ["window"])
        self.refresh()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.status,
            pn.pane.Markdown("### Collectors"),
            self.collector_line,
            self.collectors,
            pn.widgets.Select.from_param(self.param.window, width=180),
            pn.pane.Markdown("### Gaps in the trade stream"),
            self.gaps,
            pn.pane.Markdown("### Late trades (arrived after their candle closed; never change it)"),
            self.late,
            pn.pane.Markdown("### Rejected messages"),
            self.rejects,
            sizing_mode="stretch_width",
        )

    def refresh(self) -> None:
        now = datetime.now(UTC)
        span = WINDOWS[self.window]
        start = now - span if span is not None else datetime(1970, 1, 1, tzinfo=UTC)
        lines = []
        try:
            lines.append(
                f'<span data-testid="db-status">Database: ok ({self.data.db.ping() * 1000:.0f} ms)</span>'
            )
            within = "recorded" if span is None else f"in the {self.window}"
            self.gaps.object = table_html(
                gap_summary(self.data.db.gaps(None if span is None else start)), f"No gap {within}."
            )
            period = span or timedelta(days=365)
            late = count_table(
                self.data.db.late_trades(start, now, period), ["exchange", "symbol"], "late_trades"
            )
            self.late.object = table_html(late, f"No late trade {within}.")
            rejects = count_table(self.data.db.rejects(start, now, period), ["source", "reason"], "rejects")
            self.rejects.object = table_html(rejects, f"No rejected message {within}.")
        except DataUnavailable as error:
            lines.append(
                f'<span data-testid="db-status">Database: unavailable: {html.escape(str(error))}</span>'
            )
        try:
            self.states = collector_states(self.data.db.collector_health())
            self.collectors.object = table_html(
                collector_rows(self.states, self.previous, now), "No collector has reported its status yet."
            )
            self.previous = {s.collector: {**s.payload, "time": s.time} for s in self.states}
        except DataUnavailable:
            pass  # the database line above says why
        sentence = html.escape(collectors_sentence(self.states, now))
        self.collector_line.object = f'<p data-testid="collector-summary">{sentence}</p>'
        if not self.data.live.configured:
            lines.append(
                '<span data-testid="redis-status">Redis: not configured (REDIS_URL is not set); '
                "live updates off</span>"
            )
        else:
            try:
                latency = self.data.live.ping()
                lines.append(f'<span data-testid="redis-status">Redis: ok ({latency * 1000:.0f} ms)</span>')
            except DataUnavailable as error:
                lines.append(
                    f'<span data-testid="redis-status">Redis: unavailable: {html.escape(str(error))}</span>'
                )
        live = self.data.live.status
        feed = "connected" if live.connected else f"live updates off ({self.data.live.off_reason()})"
        lines.append(
            f'<span data-testid="live-feed">Live feed: {feed}'
            f", {live.messages} messages since start, {self.data.live.sessions} chart(s) following"
            "</span>"
        )
        self.status.object = "<br>".join(lines) + f"<br><small>Checked {now:%Y-%m-%d %H:%M:%S} UTC</small>"
