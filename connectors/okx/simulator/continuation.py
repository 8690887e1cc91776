"""Continuing a market that already traded: trade ids and times that follow the stored ones.

Replaying the same tape again would publish the same trade ids at new times, which no exchange does: a
consumer that remembers where it stopped (the live flow resumes after its newest stored trade id) drops
them as already seen. With ``continue_after`` (per instrument, the last trade id known and its time),
the replay is shifted so that it continues that market instead:

- ids: the instrument's first tape id becomes ``last id + 1``, and every other id moves by the same
  amount, so the replay's ids follow the stored ones without a hole (nothing was missed);
- times: the rebase offset is raised, when needed, so that the first replayed trade (history included)
  comes strictly after every instrument's last known trade, on the same ``rebase_align`` grid. When that
  puts the first trade after now, the replay starts at now and waits for it (a quiet market).

Websocket pushes, REST ``trades``/``history-trades`` and candles all serve the shifted trades, so a
backfill over REST returns exactly the ids the pushes continue from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from market.types import Trade

LastTrade = tuple[int, int]
"""(trade id, its time in epoch ms) of the last trade of an instrument known from an earlier run."""


@dataclass(frozen=True, slots=True)
class Rebase:
    """How tape times become published times: ``published = tape + offset_ms``; the clock starts at
    ``start_ms`` (published); trades published before it are history."""

    offset_ms: int
    start_ms: int


def rebase(
    first_ms: int, start_tape_ms: int, now_ms: int, align_ms: int, after_ms: int | None = None
) -> Rebase:
    """The offset that starts the replay now (at most ``align_ms`` before it, a whole number of
    ``align_ms``), raised so the first trade is published after ``after_ms`` when that is given."""
    offset = (now_ms - start_tape_ms) // align_ms * align_ms
    if after_ms is not None and first_ms + offset <= after_ms:
        offset = -((first_ms - after_ms - 1) // align_ms) * align_ms  # ceil((after + 1 - first) / align)
        return Rebase(offset, min(start_tape_ms + offset, now_ms))
    return Rebase(offset, start_tape_ms + offset)


def id_shifts(first_ids: Mapping[str, int], after: Mapping[str, LastTrade]) -> dict[str, int]:
    """Per instrument with a known last trade: what to add to the tape's ids so they continue it."""
    return {inst: after[inst][0] + 1 - first for inst, first in first_ids.items() if inst in after}


def shifted(trades: Iterator[Trade], shifts: Mapping[str, int]) -> Iterator[Trade]:
    """The trades with their ids moved by their instrument's shift (order unchanged)."""
    if not any(shifts.values()):
        yield from trades
        return
    for trade in trades:
        shift = shifts.get(trade.symbol, 0)
        yield dataclasses.replace(trade, trade_id=trade.trade_id + shift) if shift else trade
