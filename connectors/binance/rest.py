"""Async client for Binance spot's public REST market data: the newest aggregate trades and gap backfill.

``GET /api/v3/aggTrades?symbol=&fromId=&limit=1000`` pages forward from an aggregate trade id
(inclusive), oldest first, which makes a backfill a short forward walk. Binance limits REST by request
weight per IP (6000 per minute; ``aggTrades`` weighs 4 and ``exchangeInfo`` 20, see docs/binance.md) and
reports the weight used in ``X-MBX-USED-WEIGHT-1M``: the client waits for the next minute rather than
cross the budget. HTTP 429 (over the limit) and 418 (banned for ignoring 429s) carry ``Retry-After``
seconds: the client waits that long and retries, unless it is longer than ``max_retry_after`` (a ban
of minutes to days), when the request fails at once with :class:`RateLimited`. Network errors,
timeouts, 5xx and malformed bodies are retried with exponential backoff; other 4xx answers (e.g.
-1121 invalid symbol) raise :class:`BinanceRestError` at once.

Each request runs ``urllib`` in a worker thread (stdlib only, ``https`` included); the thread ends
with the request's own timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import Message
from urllib.parse import urlencode

from connectors.binance.parser import BinanceParseError, BinanceRestError, error_of, parse_rest_agg_trades
from connectors.binance.wire import SymbolMap, exchange_symbol
from connectors.exchange import BackfillResult
from market.sequencing import chained
from market.types import Trade

log = logging.getLogger(__name__)

AGG_TRADES_PATH = "/api/v3/aggTrades"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
PAGE_LIMIT = 1000  # Binance's maximum for aggTrades
WEIGHT_BUDGET = 6000  # REQUEST_WEIGHT per minute per IP
AGG_TRADES_WEIGHT = 4
EXCHANGE_INFO_WEIGHT = 20
USED_WEIGHT_HEADER = "x-mbx-used-weight-1m"


class RateLimited(RuntimeError):
    """HTTP 429/418 asking to wait longer than the client will (``retry_after`` seconds)."""

    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(f"HTTP {status}: rate limited, retry after {retry_after:.0f} s")
        self.status = status
        self.retry_after = retry_after


class _Retry(Exception):
    def __init__(self, problem: str, wait: float | None = None, status: int = 0) -> None:
        super().__init__(problem)
        self.wait = wait
        self.status = status


def _get(url: str, timeout: float) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "tcp-dashboard"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def retry_after(headers: Message, default: float) -> float:
    """``Retry-After`` in seconds (Binance sends an integer), or ``default``."""
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


class BinanceRestClient:
    """Public market-data REST client for one base URL (``https://api.binance.com``); one per loop."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        min_interval: float = 0.05,
        retry_backoff: float = 0.25,
        max_retry_after: float = 60.0,
        weight_budget: int = WEIGHT_BUDGET,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.min_interval = min_interval
        self.retry_backoff = retry_backoff
        self.max_retry_after = max_retry_after
        self.weight_budget = weight_budget
        self.requests = 0
        self.used_weight = 0
        self.waited = 0.0  # seconds spent waiting on the exchange's limits
        self._last_request = float("-inf")

    async def _pace(self, weight: int) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_request + self.min_interval - loop.time()
        if self.used_weight + weight > self.weight_budget:
            now = datetime.now(UTC)
            wait = max(wait, 60.0 - now.second - now.microsecond / 1e6)  # the minute's weight resets
            self.used_weight = 0
        if wait > 0:
            self.waited += wait
            await asyncio.sleep(wait)
        self._last_request = loop.time()

    async def get(self, path: str, params: dict[str, str], weight: int) -> bytes:
        """The body of a successful GET, after pacing, limits and retries (see the module)."""
        url = f"{self.base_url}{path}?{urlencode(params)}" if params else f"{self.base_url}{path}"
        attempt = 0
        while True:
            await self._pace(weight)
            self.requests += 1
            try:
                return await self._once(url)
            except _Retry as exc:
                if attempt >= self.retries:
                    if exc.wait is not None:
                        raise RateLimited(exc.status, exc.wait) from None
                    raise OSError(str(exc)) from None
                attempt += 1
                delay = exc.wait
                if delay is None:
                    delay = self.retry_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                log.warning(
                    "REST %s failed (%s), retry %d/%d in %.2f s", path, exc, attempt, self.retries, delay
                )
                self.waited += delay
                await asyncio.sleep(delay)

    async def _once(self, url: str) -> bytes:
        try:
            status, headers, body = await asyncio.to_thread(_get, url, self.timeout)
        except (OSError, TimeoutError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        used = headers.get(USED_WEIGHT_HEADER)
        if used is not None and used.isdigit():
            self.used_weight = int(used)
        if status in (418, 429):
            wait = retry_after(headers, 60.0)
            if wait > self.max_retry_after:
                raise RateLimited(status, wait)
            raise _Retry(f"HTTP {status}", wait, status)
        if status >= 500:
            raise _Retry(f"HTTP {status}")
        if status != 200:
            raise error_of(status, body)
        return body

    async def agg_trades(
        self, inst_id: str, from_id: int | None = None, limit: int = PAGE_LIMIT
    ) -> list[Trade]:
        """One page of aggregate trades, ascending: from ``from_id`` (inclusive), or the newest."""
        if not 1 <= limit <= PAGE_LIMIT:
            raise ValueError(f"limit must be within 1..{PAGE_LIMIT}, got {limit}")
        params = {"symbol": exchange_symbol(inst_id), "limit": str(limit)}
        if from_id is not None:
            params["fromId"] = str(from_id)
        attempt = 0
        while True:
            body = await self.get(AGG_TRADES_PATH, params, AGG_TRADES_WEIGHT)
            try:
                return parse_rest_agg_trades(body, inst_id, datetime.now(UTC))
            except BinanceParseError:
                if attempt >= self.retries:
                    raise
                attempt += 1

    async def latest_trades(self, inst_id: str, limit: int = 20) -> list[Trade]:
        """The newest ``limit`` aggregate trades, oldest first."""
        return await self.agg_trades(inst_id, None, limit)

    async def symbols(self) -> SymbolMap:
        """Every trading symbol's ``BASE-QUOTE`` id, from ``exchangeInfo``."""
        body = await self.get(EXCHANGE_INFO_PATH, {}, EXCHANGE_INFO_WEIGHT)
        try:
            return SymbolMap.from_exchange_info(body)
        except ValueError as exc:
            raise BinanceParseError(str(exc)) from None

    async def backfill(
        self, inst_id: str, after_id: int, until_id: int, *, max_pages: int = 50
    ) -> BackfillResult:
        """Trades with ``after_id < trade_id < until_id``, ascending, paging forward from ``after_id + 1``
        with pages no longer than the ids left (so trades at or past ``until_id`` come only from a server
        that pages wrongly, and are reported ``outside``).

        ``complete`` when they chain without a hole up to ``until_id - 1``. Never raises for REST
        failures: they end the walk and are reported in ``error`` with what was fetched so far.
        """
        collected: list[Trade] = []
        outside: list[Trade] = []
        cursor = after_id + 1
        before = self.requests
        error: str | None = None
        for _ in range(max_pages):
            if cursor >= until_id:
                break
            limit = min(PAGE_LIMIT, until_id - cursor)  # a page never reaches past the hole
            try:
                page = await self.agg_trades(inst_id, cursor, limit)
            except (BinanceRestError, BinanceParseError, RateLimited, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
            for trade in page:
                (collected if after_id < trade.trade_id < until_id else outside).append(trade)
            if not page or page[-1].trade_id < cursor or len(page) < limit:
                break
            cursor = page[-1].trade_id + 1
        else:
            error = f"stopped after {max_pages} pages"
        trades = sorted({t.trade_id: t for t in collected}.values(), key=lambda t: t.trade_id)
        complete = chained(after_id, trades, until_id - 1)
        log.info(
            "binance %s backfill (%d, %d): %d trades, %d request(s), %s",
            inst_id,
            after_id,
            until_id,
            len(trades),
            self.requests - before,
            "complete" if complete else f"incomplete ({error or 'REST history ends'})",
        )
        return BackfillResult(trades, complete, self.requests - before, error, outside)
