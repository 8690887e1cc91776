"""The sequencer of one live connection: per instrument, which trades to emit, hold, backfill or reject."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from market.plausibility import trade_problem
from market.sequencing.checks import (
    ahead_problem,
    chained,
    future_problem,
    hole_problem,
    push_time_problem,
    trade_json,
)
from market.sequencing.lane import Fill, Lane
from market.sequencing.messages import (
    Action,
    Backfilled,
    Disconnected,
    Event,
    FetchBackfill,
    FetchLatest,
    Gap,
    Heard,
    Latest,
    Limits,
    Position,
    Push,
    Refused,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.types import Rejected, Trade, ms_from_utc, utc_from_ms


def _first_id(trade: Trade) -> int:
    return trade.trade_id - trade.count + 1


def _ms(trade: Trade) -> int:
    return ms_from_utc(trade.ts_event)


class Sequencer:
    """Decides, for one connection's instruments, which trades to emit, hold, backfill or reject.

    Per instrument, trades leave in strictly increasing id order, each id at most once. Nothing that
    fails a check moves a position: a trade failing ``trade_problem``, stamped more than
    ``future_tolerance`` after its receive time, pushed more than ``max_behind`` before it, with an id
    implausibly far ahead of the position, of an instrument not served here, in a push of more than
    ``max_trades_per_push`` trades, or backfilled outside the hole it was asked for. An instrument
    without a position starts after the newest trade REST reports when it subscribes (or, while REST
    fails, at the first push that another push continues), so a forged first trade cannot capture it.
    """

    def __init__(
        self,
        exchange: str,
        instruments: Sequence[str],
        limits: Limits | None = None,
        *,
        positions: Mapping[str, Position] | None = None,
        end_ids: Mapping[str, int] | None = None,
        push_source: str = "ws",
        rest_source: str = "rest",
    ) -> None:
        self.exchange = exchange
        self.limits = limits or Limits()
        self.push_source = push_source
        self.rest_source = rest_source
        positions = positions or {}
        end_ids = end_ids or {}
        self._lanes = {
            s: Lane(s, positions.get(s), end_ids.get(s), "resume" if s in positions else None)
            for s in dict.fromkeys(instruments)
        }
        self._heard: datetime | None = None
        self.duplicates = 0

    # ---------------------------------------------------------------------------------- queries
    @property
    def positions(self) -> dict[str, Position]:
        return {s: lane.position for s, lane in self._lanes.items() if lane.position is not None}

    @property
    def finished(self) -> bool:
        """Every instrument with an end id reached it (never true without end ids)."""
        ends = [lane for lane in self._lanes.values() if lane.end_id is not None]
        return bool(ends) and all(
            lane.past_end or (lane.position is not None and lane.position[0] >= (lane.end_id or 0))
            for lane in ends
        )

    def stall(self) -> tuple[float, str | None]:
        """The longest span (seconds) over which an instrument's pushes arrived and none was accepted,
        with that instrument."""
        worst = max(self._lanes.values(), key=Lane.stalled, default=None)  # the first of equals
        return (worst.stalled(), worst.symbol) if worst is not None and worst.stalled() > 0 else (0.0, None)

    def next_wakeup(self) -> datetime | None:
        """When a :class:`Tick` has work: a reorder window ends, a retry or a feed state is due."""
        return min(
            (t for lane in self._lanes.values() for t in lane.due(self.limits, self._heard)), default=None
        )

    # ---------------------------------------------------------------------------------- input
    def feed(self, event: Event) -> list[Action]:
        """The actions that follow from ``event``, in order."""
        out: list[Action] = []
        now = self._apply(event, out)
        for lane in self._lanes.values():
            self._advance(lane, now, out)
            state = lane.report(self.exchange, self._heard, now, self.limits)
            if state is not None:
                out.append(state)
        return out

    def _apply(self, event: Event, out: list[Action]) -> datetime:
        """Take ``event`` into the state (rejections go to ``out``); return its time."""
        match event:
            case Start(now):
                self._on_start(now)
            case Subscribed(symbol, now):
                self._on_subscribed(self._lanes[symbol], now)
            case Refused(symbol, now, reason):
                self._on_refused(self._lanes[symbol], now, reason)
            case Push(_, _, now):
                self._on_push(event, out)
            case Heard(now):
                self._hear(now)
            case Unreadable(raw, reason, now):
                self._reject(raw, reason, now, out)
                self._suspect_all(now)
            case Latest(_, _, _, now):
                self._on_latest(event, out)
            case Backfilled(_, _, _, _, now):
                self._on_backfilled(event, out)
            case Tick(now):
                self._on_tick(now)
            case Disconnected(now, reason):
                self._on_disconnected(now, reason)
        return now

    def _on_start(self, now: datetime) -> None:
        for lane in self._lanes.values():
            lane.complete_until = now

    def _on_disconnected(self, now: datetime, reason: str) -> None:
        for lane in self._lanes.values():
            self._lose(lane, now, reason)

    def _on_subscribed(self, lane: Lane, now: datetime) -> None:
        lane.subscribed, lane.checked, lane.down_reason = True, False, ""
        self._hear(now)

    def _on_refused(self, lane: Lane, now: datetime, reason: str) -> None:
        lane.refused, lane.subscribed, lane.down_reason = True, False, f"refused: {reason}"
        lane.held.clear()
        self._hear(now)

    def _hear(self, now: datetime) -> None:
        self._heard = now if self._heard is None else max(self._heard, now)

    def _on_push(self, push: Push, out: list[Action]) -> None:
        now, count = push.received, len(push.trades)
        if count > self.limits.max_trades_per_push:
            limit = self.limits.max_trades_per_push
            self._reject(push.raw, f"push of {count} trades (limit {limit})", now, out)
            self._suspect_all(now)
            return
        touched: dict[str, Lane] = {}
        for index, trade in enumerate(push.trades):
            lane = self._lanes.get(trade.symbol)
            problem = trade_problem(trade)
            if problem is None and (lane is None or lane.refused):
                problem = f"instrument {trade.symbol} is not subscribed on this connection"
            if problem is not None or lane is None:
                self._reject(push.raw, f"trade {index + 1} of {count}: {problem}", now, out)
            elif trade.trade_id in lane.held:
                self.duplicates += 1
            else:
                lane.held[trade.trade_id] = (trade, push.raw)
                touched[lane.symbol] = lane
        for lane in touched.values():
            lane.last_push_at = now
            if lane.unaccepted_since is None:
                lane.unaccepted_since = now
            if len(lane.held) > 2 * self.limits.reorder_max:  # waiting too long for an answer or a start
                lane.held.clear()  # the REST check that follows finds them again
                lane.checked, lane.recheck = False, lane.request is not None
                lane.urgent = lane.urgent or "sequence"
            self._advance(lane, now, out)
        self._hear(now)

    def _reject(self, raw: bytes, reason: str, now: datetime, out: list[Action]) -> None:
        limit = self.limits.raw_limit
        cut = f" (frame of {len(raw)} bytes, first {limit} kept)" if len(raw) > limit else ""
        out.append(Rejected(raw[:limit], reason + cut, now, self.push_source))

    def _reject_rest(self, trade: Trade, reason: str, now: datetime, out: list[Action]) -> None:
        out.append(
            Rejected(trade_json(trade), f"REST trade {trade.trade_id}: {reason}", now, self.rest_source)
        )

    def _suspect_all(self, now: datetime) -> None:
        """An unreadable frame may have carried trades: each instrument's feed is complete only up to
        the frame before, until a later push shows its sequence intact or REST confirms it."""
        for lane in self._lanes.values():
            if lane.subscribed and lane.suspect_at is None:
                lane.suspect_at, lane.heard_cap = now, self._heard
        self._hear(now)

    def _lose(self, lane: Lane, now: datetime, reason: str) -> None:
        if lane.refused:
            return
        lane.subscribed, lane.checked, lane.down_reason = False, False, reason
        lane.held.clear()
        lane.hole_since = lane.target = lane.suspect_at = lane.heard_cap = None
        if lane.position is not None and lane.urgent != "resume":
            lane.urgent = "reconnect"
        if lane.lost_at is None:
            lane.lost_at = now

    def _on_tick(self, now: datetime) -> None:
        for lane in self._lanes.values():
            if lane.retry_at is not None and now >= lane.retry_at:
                lane.retry_at = None
                lane.checked = lane.position is not None
            if lane.suspect_at is not None and now >= lane.suspect_at + self.limits.reorder_window:
                lane.suspect_at = lane.heard_cap = None
                lane.checked, lane.urgent = False, lane.urgent or "sequence"

    # ---------------------------------------------------------------------------------- REST answers
    def _rest_problem(self, trade: Trade, lane: Lane) -> str | None:
        problem = trade_problem(trade) or future_problem(trade, self.limits)
        if problem is None and trade.symbol != lane.symbol:
            problem = f"instrument {trade.symbol} was not asked for"
        return problem

    def _on_latest(self, answer: Latest, out: list[Action]) -> None:
        lane = self._lanes[answer.symbol]
        lane.request = None
        lane.checked, lane.recheck = not lane.recheck, False
        newest: Trade | None = None
        for trade in answer.trades:
            problem = self._rest_problem(trade, lane)
            if problem is None and lane.position is not None:
                problem = ahead_problem(trade, lane.position, self.limits)
            if problem is not None:
                self._reject_rest(trade, problem, answer.received, out)
            elif newest is None or trade.trade_id > newest.trade_id:
                newest = trade
        if newest is None:
            if lane.position is None:
                lane.retry_at = answer.received + self.limits.retry_interval
        elif lane.position is None:  # the start: after the newest trade the exchange reports
            lane.position, lane.urgent = (newest.trade_id, _ms(newest)), None
        elif newest.trade_id > lane.position[0]:
            lane.target = newest

    def _on_backfilled(self, answer: Backfilled, out: list[Action]) -> None:
        request, now = answer.request, answer.received
        lane = self._lanes[request.symbol]
        fill = lane.fill
        assert fill is not None and lane.position is not None, "a backfill answer without its request"
        lane.request = lane.fill = None
        if lane.recheck:
            lane.checked = lane.recheck = False
        ids = f"({request.after_id}, {request.until_id})"
        for trade in answer.outside:
            self._reject_rest(trade, f"outside the ids asked for {ids}", now, out)
        accepted: list[Trade] = []
        for trade in sorted(answer.trades, key=lambda t: t.trade_id):
            problem = self._rest_problem(trade, lane) or hole_problem(trade, request, fill)
            if problem is not None:
                self._reject_rest(trade, problem, now, out)
            elif not accepted or trade.trade_id > accepted[-1].trade_id:
                accepted.append(trade)
        emitted = sum(lane.end_id is None or t.trade_id <= lane.end_id for t in accepted)
        recovery = None
        if fill.reason == "reconnect" and lane.lost_at is not None:
            recovery = (now - lane.lost_at).total_seconds()
        from_time = None if fill.from_ms is None else utc_from_ms(fill.from_ms)
        out.append(
            Gap(
                self.exchange,
                lane.symbol,
                request.after_id,
                request.until_id,
                from_time,
                utc_from_ms(fill.to_ms),
                chained(request.after_id, accepted, request.until_id - 1),
                emitted,
                fill.reason,
                now,
                recovery,
                answer.error,
            )
        )
        for trade in accepted:
            self._emit(lane, trade, out)
        if not lane.past_end and lane.position is not None:  # an unfilled hole is given up, not waited for
            lane.position = (max(lane.position[0], request.until_id - 1), lane.position[1])
        lane.hole_since = lane.urgent = None

    # ---------------------------------------------------------------------------------- decisions
    def _advance(self, lane: Lane, now: datetime, out: list[Action]) -> None:
        """Emit the held pushes that continue the sequence; hold, backfill or reject the others."""
        while lane.subscribed and lane.request is None and not lane.past_end:
            if not lane.checked:
                lane.request = FetchLatest(lane.symbol)
                out.append(lane.request)
                return
            if lane.position is None and not self._start_by_chain(lane, now, out):
                return
            if not self._step(lane, now, out):
                return

    def _step(self, lane: Lane, now: datetime, out: list[Action]) -> bool:
        """Ask for the trades up to REST's newest, or settle the lowest held push; False: wait for input."""
        position = lane.position
        assert position is not None
        if lane.target is not None and lane.target.trade_id <= position[0]:
            lane.target = None
        lowest, target = lane.lowest(), lane.target
        if target is not None and (lowest is None or target.trade_id < _first_id(lowest[0])):
            self._ask(lane, target.trade_id + 1, _ms(target), out)
            return False
        if lowest is None:  # caught up
            lane.hole_since = lane.urgent = None
            return False
        trade, raw = lowest
        if trade.trade_id <= position[0]:
            del lane.held[trade.trade_id]
            self.duplicates += 1
            return True
        problem = push_time_problem(trade, self.limits) or ahead_problem(trade, position, self.limits)
        if problem is not None:
            del lane.held[trade.trade_id]
            self._reject(raw, f"{trade.symbol} trade {trade.trade_id}: {problem}", now, out)
            return True
        return self._take(lane, trade, position, now, out)

    def _take(self, lane: Lane, trade: Trade, position: Position, now: datetime, out: list[Action]) -> bool:
        """Emit a plausible held push that continues the sequence (True); else hold it (False), asking for
        the hole once the reorder window or buffer is spent."""
        if lane.suspect_at is not None and trade.ts_recv is not None and trade.ts_recv > lane.suspect_at:
            lane.suspect_at = lane.heard_cap = None  # this push shows whether anything is missing
        if trade.trade_id - trade.count <= position[0]:
            del lane.held[trade.trade_id]
            self._emit(lane, trade, out)
            lane.hole_since = None
            return True
        if lane.hole_since is None:
            lane.hole_since = now
        if (
            lane.urgent is not None
            or now - lane.hole_since >= self.limits.reorder_window
            or len(lane.held) >= self.limits.reorder_max
        ):
            self._ask(lane, _first_id(trade), _ms(trade), out)
        return False

    def _ask(self, lane: Lane, until_id: int, to_ms: int, out: list[Action]) -> None:
        assert lane.position is not None
        lane.request = FetchBackfill(lane.symbol, lane.position[0], until_id)
        lane.fill = Fill(lane.position[1], to_ms, lane.urgent or "sequence")
        out.append(lane.request)

    def _start_by_chain(self, lane: Lane, now: datetime, out: list[Action]) -> bool:
        """Without REST's newest trade, start at the first held push that another one continues: a
        lone push, such as a forged id, cannot start the sequence."""
        for trade_id in sorted(lane.held):
            trade, raw = lane.held[trade_id]
            problem = push_time_problem(trade, self.limits)
            if problem is not None:
                del lane.held[trade_id]
                self._reject(raw, f"{trade.symbol} trade {trade_id}: {problem}", now, out)
        ids = sorted(lane.held)
        for index, (before, after) in enumerate(zip(ids, ids[1:], strict=False)):
            first, second = lane.held[before][0], lane.held[after][0]
            if second.trade_id - second.count == first.trade_id:
                for trade_id in ids[:index]:  # before the start
                    del lane.held[trade_id]
                lane.position, lane.urgent = (_first_id(first) - 1, _ms(first)), None
                return True
        return False

    def _emit(self, lane: Lane, trade: Trade, out: list[Action]) -> None:
        if lane.end_id is not None and trade.trade_id > lane.end_id:
            lane.past_end = True
            return
        lane.position = (trade.trade_id, _ms(trade))
        lane.unaccepted_since = None
        lane.observe(trade)
        out.append(trade)
