"""Async client for OKX's public REST market data: the newest trades, ``history-trades`` and gap backfill.

HTTP/1.1 GET over ``asyncio`` streams (stdlib only; ``https`` through :mod:`ssl`), one connection per
request, so a cancelled request leaves nothing open. Requests are paced (at least ``min_interval``
between two requests of one client; OKX allows 20 ``history-trades`` requests per 2 s per IP) and
retried with exponential backoff on network errors, timeouts, HTTP 429/5xx, malformed bodies and OKX's
transient envelope codes (50001 service unavailable, 50004 timeout, 50011 rate limit, 50013 busy,
50026 system error). Other envelope codes (e.g. 51001 unknown instrument) raise :class:`OkxRestError`
at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from connectors.exchange import BackfillResult
from connectors.okx.parser import parse_rest_trades
from connectors.okx.wire import OkxParseError, OkxRestError
from market.sequencing import chained
from market.types import Trade

log = logging.getLogger(__name__)

TRADES_PATH = "/api/v5/market/trades"
HISTORY_TRADES_PATH = "/api/v5/market/history-trades"
PAGE_LIMIT = 100  # OKX's maximum for history-trades
LATEST_LIMIT = 500  # OKX's maximum for trades
RETRYABLE_CODES = frozenset({"50001", "50004", "50011", "50013", "50026"})
_MAX_BODY = 8 * 1024 * 1024
PROGRESS_EVERY = 2.0  # seconds between backfill progress lines


class HttpError(OSError):
    """A transport-level failure (bad status line, truncated body, unexpected status without a body)."""


async def http_get(url: str) -> tuple[int, bytes]:
    """One HTTP/1.1 GET; returns (status, body). Handles Content-Length, chunked and read-to-close.

    No timeout of its own: callers bound it with ``asyncio.timeout``.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    context = ssl.create_default_context() if secure else None
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        netloc = parts.netloc.rsplit("@", 1)[-1]
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\nAccept: application/json\r\n"
            "Connection: close\r\nUser-Agent: tcp-dashboard\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.split(None, 2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise HttpError(f"bad status line {status_line[:80]!r}")
        status = int(fields[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await _read_to_close(reader)
        return status, body
    except asyncio.IncompleteReadError as exc:
        raise HttpError(f"truncated body ({len(exc.partial)} bytes)") from None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > _MAX_BODY:
            raise HttpError("body too large")
    return bytes(body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
        if len(body) > _MAX_BODY:
            raise HttpError("body too large")


class OkxRestClient:
    """Public market-data REST client for one base URL (e.g. ``https://www.okx.com``).

    Not thread-safe: use one client per event loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        min_interval: float = 0.1,
        retry_backoff: float = 0.25,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.min_interval = min_interval
        self.retry_backoff = retry_backoff
        self.requests = 0
        self._last_request = float("-inf")

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_request + self.min_interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_request = loop.time()

    async def get_trades(self, path: str, params: dict[str, str]) -> list[Trade]:
        """GET ``path`` with ``params``; parsed trades in the body's order (newest first for OKX)."""
        url = f"{self.base_url}{path}?{urlencode(params)}"
        attempt = 0
        while True:
            await self._pace()
            self.requests += 1
            try:
                async with asyncio.timeout(self.timeout):
                    status, body = await http_get(url)
                if status == 429 or status >= 500:
                    raise HttpError(f"HTTP {status}")
                return parse_rest_trades(body, datetime.now(UTC))
            except OkxRestError as exc:
                if exc.code not in RETRYABLE_CODES or attempt >= self.retries:
                    raise
                problem = str(exc)
            except (OSError, TimeoutError, OkxParseError) as exc:
                if attempt >= self.retries:
                    raise
                problem = f"{type(exc).__name__}: {exc}"
            attempt += 1
            delay = self.retry_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
            log.warning(
                "REST %s failed (%s), retry %d/%d in %.2f s",
                path,
                problem,
                attempt,
                self.retries,
                delay,
                extra={"exchange": "okx", "symbol": params.get("instId")},
            )
            await asyncio.sleep(delay)

    async def latest_trades(self, inst_id: str, limit: int = 20) -> list[Trade]:
        """``GET /api/v5/market/trades``: the newest ``limit`` trades, newest first."""
        if not 1 <= limit <= LATEST_LIMIT:
            raise ValueError(f"limit must be within 1..{LATEST_LIMIT}, got {limit}")
        trades = await self.get_trades(TRADES_PATH, {"instId": inst_id, "limit": str(limit)})
        return [_as_rest(trade) for trade in trades]

    async def history_trades(
        self, inst_id: str, after: int | None = None, before: int | None = None, limit: int = PAGE_LIMIT
    ) -> list[Trade]:
        """One page of ``GET /api/v5/market/history-trades`` paginated by trade id (``type=1``).

        ``after``: trades older than this id; ``before``: newer than this id. Newest first, as OKX answers.
        """
        if not 1 <= limit <= PAGE_LIMIT:
            raise ValueError(f"limit must be within 1..{PAGE_LIMIT}, got {limit}")
        params = {"instId": inst_id, "type": "1", "limit": str(limit)}
        if after is not None:
            params["after"] = str(after)
        if before is not None:
            params["before"] = str(before)
        trades = await self.get_trades(HISTORY_TRADES_PATH, params)
        return [_as_rest(trade) for trade in trades]

    async def backfill(
        self, inst_id: str, after_id: int, until_id: int, *, max_pages: int = 50
    ) -> BackfillResult:
        """Trades with ``after_id < trade_id < until_id``, ascending, walking pages from ``until_id`` back.

        ``complete`` is true when the trades chain without a hole from ``after_id`` to ``until_id - 1``
        (``tradeId - count == previous tradeId``). Never raises for REST failures: they end the walk and
        are reported in ``error`` with whatever was fetched so far.
        """
        collected: dict[int, Trade] = {}
        outside: dict[int, Trade] = {}
        cursor = until_id
        requests_before = self.requests
        error: str | None = None
        started = next_report = time.monotonic()
        for _ in range(max_pages):
            if cursor <= after_id + 1:
                break
            if time.monotonic() >= next_report + PROGRESS_EVERY:
                next_report = time.monotonic()
                done = (until_id - cursor) / max(1, until_id - after_id - 1)
                log.info(
                    "okx %s backfill: %d trades, %d%% of ids %d..%d, %.0f s",
                    inst_id,
                    len(collected),
                    100 * done,
                    after_id + 1,
                    until_id - 1,
                    next_report - started,
                    extra={"exchange": "okx", "symbol": inst_id},
                )
            try:
                page = await self.history_trades(inst_id, after=cursor, before=after_id)
            except (OkxRestError, OkxParseError, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
            inside = [t for t in page if after_id < t.trade_id < until_id]
            for trade in page:
                (collected if after_id < trade.trade_id < until_id else outside)[trade.trade_id] = trade
            if not inside or len(page) < PAGE_LIMIT:
                break
            cursor = min(t.trade_id for t in inside)
        else:
            error = f"stopped after {max_pages} pages"
        trades = [collected[i] for i in sorted(collected)]
        complete = chained(after_id, trades, until_id - 1)
        if trades or error:
            log.info(
                "okx %s backfill done: %d trades in %.1f s, %d request(s), %s",
                inst_id,
                len(trades),
                time.monotonic() - started,
                self.requests - requests_before,
                "complete" if complete else f"incomplete ({error or 'REST history ends'})",
                extra={"exchange": "okx", "symbol": inst_id},
            )
        return BackfillResult(
            trades, complete, self.requests - requests_before, error, [outside[i] for i in sorted(outside)]
        )


def _as_rest(trade: Trade) -> Trade:
    return replace(trade, origin="rest")
