"""REST market data over the played trades: ``GET /api/v5/market/trades`` and ``history-trades``.

Semantics as documented by OKX (PROTOCOL-NOTES, [DOC-REST]): ``trades`` returns the latest ``limit``
(default 100, at most 500) trades, newest first. ``history-trades`` pages by trade id (``type=1``, the
default) or by time (``type=2``, ``after`` only): ``after`` = records older than the id/ts, ``before`` =
records newer than the id; "the latest data will be returned when using ``before`` individually";
``limit`` at most and by default 100; newest first. Only trades the replay clock has already played exist.
Errors use OKX's envelope ``{"code":..,"msg":..,"data":[]}``.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping

from connectors.okx.simulator import messages
from connectors.okx.simulator.faults import poisoned_rows
from connectors.okx.simulator.replay import InstrumentHistory, Market

log = logging.getLogger("okx-simulator")
TRADES_PATH = "/api/v5/market/trades"
HISTORY_TRADES_PATH = "/api/v5/market/history-trades"


class RestError(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg


def _param(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _integer(query: Mapping[str, list[str]], name: str) -> int | None:
    value = _param(query, name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()):
        raise RestError(400, "51000", f"Parameter {name} error")
    return int(value)


def _limit(query: Mapping[str, list[str]], maximum: int) -> int:
    limit = _integer(query, "limit")
    if limit is None:
        return 100
    if not 1 <= limit <= maximum:
        raise RestError(400, "51000", "Parameter limit error")
    return limit


def _history(market: Market, query: Mapping[str, list[str]]) -> InstrumentHistory:
    inst_id = _param(query, "instId")
    if not inst_id:
        raise RestError(400, "50014", "Parameter instId can not be empty.")
    history = market.history.get(inst_id)
    if history is None:
        raise RestError(400, "51001", "Instrument ID does not exist.")
    return history


def _rows(market: Market, history: InstrumentHistory, lo: int, hi: int) -> list[dict[str, str]]:
    """Trades with index in [lo, hi), newest first."""
    return [messages.rest_trade(history.trades[i], market.offset_ms) for i in range(hi - 1, lo - 1, -1)]


def trades(market: Market, query: Mapping[str, list[str]]) -> list[dict[str, str]]:
    history = _history(market, query)
    limit = _limit(query, 500)
    end = len(history.trades)
    return _rows(market, history, max(0, end - limit), end)


def history_trades(
    market: Market, query: Mapping[str, list[str]], poison: str | None = None
) -> list[dict[str, str]]:
    history = _history(market, query)
    kind = _param(query, "type") or "1"
    if kind not in ("1", "2"):
        raise RestError(400, "51000", "Parameter type error")
    limit = _limit(query, 100)
    after = _integer(query, "after")
    before = _integer(query, "before")
    keys = history.ids if kind == "1" else history.times
    if kind == "2" and before is not None:
        raise RestError(400, "51000", "Parameter before error")
    hi = len(keys) if after is None else bisect.bisect_left(keys, after)
    lo = 0 if before is None else bisect.bisect_right(history.ids, before)
    if lo >= hi:
        return []
    rows = _rows(market, history, max(lo, hi - limit), hi)
    if poison is not None:
        rows, done = poisoned_rows(rows, poison, after)
        log.info("fault: REST poison: %s", done)
    return rows


ROUTES = {TRADES_PATH: trades, HISTORY_TRADES_PATH: history_trades}


def handle(
    market: Market, path: str, query: Mapping[str, list[str]], poison: str | None = None
) -> tuple[int, bytes]:
    """Answer one GET: (HTTP status, JSON body). ``poison``: the ``rest_poison`` fault for history-trades."""
    route = ROUTES.get(path)
    if route is None:
        return 404, messages.rest_envelope([], "50000", f"Path {path} is not served by the simulator")
    try:
        rows = history_trades(market, query, poison) if route is history_trades else route(market, query)
        return 200, messages.rest_envelope(rows)
    except RestError as exc:
        return exc.status, messages.rest_envelope([], exc.code, exc.msg)
