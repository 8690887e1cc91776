"""Sequencing of a live connection's trades, as a pure state machine (STYLE patterns 19 and 20).

Every input is data stamped with its receive time (:class:`Start`, :class:`Subscribed`,
:class:`Refused`, :class:`Push`, :class:`Heard`, :class:`Unreadable`, :class:`Latest`,
:class:`Backfilled`, :class:`Tick`, :class:`Disconnected`); :meth:`Sequencer.feed` returns the actions
in order: items for the dataflow (``Trade``, ``Rejected``, :class:`Gap`, ``FeedState``) and requests the
caller performs and answers (:class:`FetchLatest` with ``Latest``, :class:`FetchBackfill` with
``Backfilled``). Nothing here reads a clock or does I/O, so a recorded session replays row for row.
The rules are documented in docs/okx-connectivity.md.
"""

from market.sequencing.checks import chained, trade_json
from market.sequencing.messages import (
    Action,
    Backfilled,
    Disconnected,
    Event,
    FetchBackfill,
    FetchLatest,
    Gap,
    GapReason,
    Heard,
    Latest,
    Limits,
    Position,
    Push,
    Refused,
    Request,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.sequencing.sequencer import Sequencer

__all__ = [
    "Action",
    "Backfilled",
    "Disconnected",
    "Event",
    "FetchBackfill",
    "FetchLatest",
    "Gap",
    "GapReason",
    "Heard",
    "Latest",
    "Limits",
    "Position",
    "Push",
    "Refused",
    "Request",
    "Sequencer",
    "Start",
    "Subscribed",
    "Tick",
    "Unreadable",
    "chained",
    "trade_json",
]
