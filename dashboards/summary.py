"""The chart's summary line and empty-state notice as HTML: pure, every value escaped.

Each value carries a ``data-testid`` (docs/dashboard.md lists them) so tests read what the page shows.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dashboards.collectors import CollectorState, collectors_sentence, empty_message
from dashboards.shaping import utc_text

NOTICE_STYLE = "background: #e3f2fd; border: 1px solid #90caf9; border-radius: 4px; padding: 8px 12px"


def markdown_code(text: str) -> str:
    """Escaped text with `backticks` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


@dataclass(frozen=True)
class ChartState:
    """What the summary tells about one series."""

    symbol: str
    timeframe: str
    candles: Mapping[str, Sequence[Any]]
    """The candle source's columns (``time`` in ms, ``close_text``)."""
    signals: int
    provisional: Mapping[str, Any] | None
    live_error: str | None
    """Why live updates are off, None while following Redis."""
    waiting: Sequence[str]
    states: Sequence[CollectorState]
    database_answers: bool = True
    """False while the database does not answer: the collectors' status is then unknown."""


def provisional_html(p: Mapping[str, Any] | None, timeframe: str) -> str:
    if p is None:
        return "none"
    derived = "" if timeframe == "1m" else ", from its 1m candles"
    return (
        f'<span data-testid="provisional-close">{html.escape(format(p["close"], "f"))}</span> '
        f"(in progress, closes {p['time']:%H:%M} UTC, as of {p['as_of']:%H:%M:%S} UTC{derived})"
    )


def summary_html(c: ChartState, now: datetime) -> str:
    """Candles, last close and its time, signals, the provisional candle, live status, collectors."""
    n = len(c.candles["time"])
    last = (
        f'<span data-testid="last-close">{html.escape(c.candles["close_text"][-1])}</span> '
        f'(candle closing <span data-testid="last-close-time">{utc_text(c.candles["time"][-1])}</span> UTC)'
        if n
        else '<span data-testid="last-close">none</span>'
    )
    live = "following Redis" if c.live_error is None else f"live updates off ({c.live_error})"
    collectors = html.escape(
        collectors_sentence(c.states, now)
        if c.database_answers
        else "Collector status unknown while the database does not answer."
    )
    prov = provisional_html(c.provisional, c.timeframe)
    waiting = (
        f'<br><span data-testid="waiting">No values yet (warm-up): {html.escape(", ".join(c.waiting))}</span>'
        if c.waiting
        else ""
    )
    return (
        f'<div class="tcp-summary"><b>{html.escape(c.symbol)} {c.timeframe}</b> &middot; '
        f'<span data-testid="candle-count">Candles: {n}</span> &middot; Last close: {last} &middot; '
        f'<span data-testid="signal-count">Signals: {c.signals}</span>'
        f'<br>Provisional: <span data-testid="provisional">{prov}</span>'
        f' &middot; <span data-testid="live-status">Live: {html.escape(live)}</span>'
        f'<br><span data-testid="collector-status">{collectors}</span>{waiting}</div>'
    )


def empty_html(c: ChartState, now: datetime) -> str:
    """Why the series has no candle yet (from the collectors' states)."""
    text = markdown_code(empty_message(c.symbol, c.timeframe, c.states, now))
    return f'<div class="tcp-empty-state" style="{NOTICE_STYLE}" data-testid="empty-state">{text}</div>'
