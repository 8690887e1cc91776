"""What one exchange connection does with its sequencer's actions, apart from the socket.

:class:`Handover` performs them in order: a REST request (newest trades, or a backfill of a hole) is
made and its answer fed back to the sequencer, breadth first, so that an answer's items follow
everything decided before it; every other item (trade, reject, gap, feed state) is handed to the
:class:`Outbox`. It keeps the counts and the last error the connection's health reports.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime

from connectors.exchange import TradeHistory
from connectors.metrics import count_gap_opened
from connectors.stream_connection import Outbox, StreamOptions
from market.sequencing import (
    Action,
    Backfilled,
    FetchBackfill,
    FetchLatest,
    Gap,
    Latest,
    Refused,
    Sequencer,
)
from market.types import Rejected, Trade

log = logging.getLogger(__name__)

REST_ERRORS = (RuntimeError, ValueError, OSError, TimeoutError)
"""What the exchanges' REST clients raise for a failed request (their ``...RestError``, ``RateLimited``:
RuntimeError; malformed answers, ``...ParseError``: ValueError; network errors and timeouts)."""


def _now() -> datetime:
    return datetime.now(UTC)


class Handover:
    """Performs one connection's sequencer actions and counts what it handed over (see the module)."""

    def __init__(
        self, name: str, sequencer: Sequencer, rest: TradeHistory, outbox: Outbox, options: StreamOptions
    ) -> None:
        self.name = name
        self.exchange = sequencer.exchange
        self.sequencer = sequencer
        self.rest = rest
        self.outbox = outbox
        self.options = options
        self.trades_emitted = 0
        self.trades_backfilled = 0
        self.gaps_filled = 0
        self.gaps_unfilled = 0
        self.rejects = 0
        self.last_error: str | None = None
        self.refused: set[str] = set()
        """Instruments refused on REST's word (not asked for again on a new connection)."""

    def error(self, text: str, symbol: str | None = None) -> None:
        """Note ``text`` as the connection's last error, and log it (about ``symbol``, when one)."""
        self.last_error = text
        log.warning(
            "%s %s: %s", self.exchange, self.name, text, extra={"exchange": self.exchange, "symbol": symbol}
        )

    async def apply(self, actions: list[Action]) -> None:
        """Hand items over in order; perform requests and feed their answers back (breadth first, so an
        answer's items follow everything decided before it)."""
        work = deque(actions)
        while work:
            action = work.popleft()
            if isinstance(action, FetchLatest):
                await self.outbox.room()
                work.extend(self.sequencer.feed(await self._latest(action)))
            elif isinstance(action, FetchBackfill):
                count_gap_opened(self.sequencer.exchange, action.symbol)
                await self.outbox.room()
                work.extend(self.sequencer.feed(await self._backfill(action)))
            else:
                self.hand(action)

    def hand_all(self, actions: list[Action]) -> None:
        """Hand over the items of an input that cannot raise requests (no instrument is subscribed)."""
        for action in actions:
            assert not isinstance(action, FetchLatest | FetchBackfill), action
            self.hand(action)

    def hand(self, item: object) -> None:
        if isinstance(item, Trade):
            self.trades_emitted += 1
            self.trades_backfilled += item.origin == "rest"
        elif isinstance(item, Rejected):
            self.rejects += 1
            self.last_error = f"rejected ({item.source}): {item.reason[:300]}"
            log.debug(
                "%s %s: %s", self.exchange, self.name, self.last_error, extra={"exchange": self.exchange}
            )
        elif isinstance(item, Gap):
            if item.filled:
                self.gaps_filled += 1
            else:
                self.gaps_unfilled += 1
                self.error(
                    f"unfilled gap {item.symbol} ({item.from_trade_id}, {item.to_trade_id}): "
                    f"{item.trades_backfilled} trades backfilled, "
                    f"{item.error or 'REST history does not reach back far enough'}",
                    item.symbol,
                )
        self.outbox.put(item)

    async def _latest(self, request: FetchLatest) -> Latest | Refused:
        """The newest trades; an instrument the exchange's REST says it does not know (an error with a
        true ``unknown_instrument``: an exchange that subscribes any name, as Binance does) is refused."""
        try:
            trades = await self.rest.latest_trades(request.symbol, self.options.latest_limit)
        except REST_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
            if getattr(exc, "unknown_instrument", False) is True:
                self.refused.add(request.symbol)
                self.error(f"{request.symbol} refused: {error}", request.symbol)
                return Refused(request.symbol, _now(), error)
            log.warning(
                "%s %s: newest %s trades unavailable: %s",
                self.exchange,
                self.name,
                request.symbol,
                error,
                extra={"exchange": self.exchange, "symbol": request.symbol},
            )
            return Latest(request.symbol, (), error, _now())
        return Latest(request.symbol, tuple(trades), None, _now())

    async def _backfill(self, request: FetchBackfill) -> Backfilled:
        result = await self.rest.backfill(
            request.symbol, request.after_id, request.until_id, max_pages=self.options.backfill_max_pages
        )
        return Backfilled(request, tuple(result.trades), tuple(result.outside), result.error, _now())
