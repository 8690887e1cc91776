"""The named read queries (sql.queries) on both engines, against the stream's output and known rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from market.types import Candle, IndicatorValue, Signal
from sql import queries
from tests.sql.conftest import GAPS, LATE_TRADES, REJECTS, Loaded

TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h", "1d"]


def as_row(candle: Candle) -> dict[str, Any]:
    row = {name: getattr(candle, name) for name in queries.CANDLE_COLUMNS if name != "time"}
    return {**row, "time": candle.close_time}


@pytest.mark.parametrize("timeframe", TIMEFRAMES)
def test_latest_candles_are_the_newest_stream_candles_oldest_first(xrp_db: Loaded, timeframe: str) -> None:
    expected = [as_row(c) for c in xrp_db.stream.of(timeframe)][-3:]
    with psycopg.connect(xrp_db.url) as conn:
        got = queries.latest_candles(conn, "okx", "XRP-ETH", timeframe, limit=3)
        assert queries.latest_candles(conn, "okx", "NO-SUCH", timeframe) == []
    assert got == expected


def test_candles_between_covers_the_half_open_range_by_close(xrp_db: Loaded) -> None:
    start, end = datetime(2019, 10, 12, tzinfo=UTC), datetime(2019, 10, 13, tzinfo=UTC)
    with psycopg.connect(xrp_db.url) as conn:
        day = queries.candles_between(conn, "okx", "XRP-ETH", "1m", start, end)
        hours = queries.candles_between(conn, "okx", "XRP-ETH", "1h", start, end)
    assert len(day) == 1440 and day[0]["time"] == start + timedelta(minutes=1) and day[-1]["time"] == end
    assert day == [as_row(c) for c in xrp_db.stream.of("1m") if start < c.close_time <= end]
    assert hours == [as_row(c) for c in xrp_db.stream.of("1h") if start < c.close_time <= end]
    assert len(hours) == 24


def test_latest_closes_per_symbol(xrp_db: Loaded) -> None:
    last_1m, last_1h = xrp_db.stream.of("1m")[-1], xrp_db.stream.of("1h")[-1]
    with psycopg.connect(xrp_db.url) as conn:
        got = queries.latest_closes(conn, "okx", ["XRP-ETH", "NO-SUCH"])
        hourly = queries.latest_closes(conn, "okx", ["XRP-ETH"], "1h")
    assert got == [
        {
            "symbol": "XRP-ETH",
            "time": last_1m.close_time,
            "close": last_1m.close,
            "trade_count": last_1m.trade_count,
        }
    ]
    assert hourly[0]["time"] == last_1h.close_time and hourly[0]["close"] == last_1h.close


def test_late_trade_and_reject_counts_per_period(xrp_db: Loaded) -> None:
    start = datetime(2019, 10, 11, tzinfo=UTC)
    end = datetime(2019, 10, 14, tzinfo=UTC)
    hour = timedelta(hours=1)
    expected: dict[tuple[str, datetime], list[timedelta]] = {}
    for symbol, _, time, lateness in LATE_TRADES:
        close = time.replace(minute=0, second=0) + hour
        expected.setdefault((symbol, close), []).append(lateness)
    with psycopg.connect(xrp_db.url) as conn:
        late = queries.late_trade_counts(conn, start, end, hour)
        xrp_only = queries.late_trade_counts(conn, start, end, hour, exchange="okx", symbol="XRP-ETH")
        daily = queries.late_trade_counts(conn, start, end, timedelta(days=1))
        rejects = queries.reject_counts(conn, start, end, hour)
    assert {(r["symbol"], r["time"]): (r["late_trades"], r["max_lateness"]) for r in late} == {
        key: (len(v), max(v)) for key, v in expected.items()
    }
    assert {r["symbol"] for r in xrp_only} == {"XRP-ETH"} and sum(r["late_trades"] for r in xrp_only) == 3
    assert [(r["symbol"], r["late_trades"]) for r in daily] == [("BTC-USDT", 1), ("XRP-ETH", 3)]
    expected_rejects: dict[tuple[str, str, datetime], int] = {}
    for received, source, reason in REJECTS:
        key = (source, reason, received.replace(minute=0) + hour)
        expected_rejects[key] = expected_rejects.get(key, 0) + 1
    assert {(r["source"], r["reason"], r["time"]): r["rejects"] for r in rejects} == expected_rejects


def test_gaps_filters(xrp_db: Loaded) -> None:
    with psycopg.connect(xrp_db.url) as conn:
        every = queries.gaps(conn)
        xrp = queries.gaps(conn, "okx", "XRP-ETH")
        open_ = queries.gaps(conn, unfilled_only=True)
        recent = queries.gaps(conn, since=GAPS[1][6])
    assert [g["detected_at"] for g in every] == sorted((g[6] for g in GAPS), reverse=True)
    assert {(g["from_trade_id"], g["to_trade_id"]) for g in xrp} == {
        (13_520_000, 13_520_010),
        (13_530_000, 13_530_002),
    }
    assert [(g["symbol"], g["filled"]) for g in open_] == [("XRP-ETH", False)]
    assert len(recent) == 2 and set(every[0]) == {
        "exchange",
        "symbol",
        "from_trade_id",
        "to_trade_id",
        "from_time",
        "to_time",
        "filled",
        "trades_backfilled",
        "detected_at",
    }


@pytest.mark.parametrize("timeframe", ["1m", "1h"])
def test_latest_indicator_values_are_the_streams_newest(xrp_db: Loaded, timeframe: str) -> None:
    values = [
        v
        for v in xrp_db.stream.indicators
        if isinstance(v, IndicatorValue) and v.timeframe == timeframe and v.symbol == "XRP-ETH"
    ]
    newest: dict[tuple[str, str], tuple[datetime, float]] = {}
    for value in values:
        for output, number in value.values.items():
            key = (value.indicator, output)
            if key not in newest or value.time > newest[key][0]:
                newest[key] = (value.time, number)
    cut = sorted({v.time for v in values})[-10]
    earlier: dict[tuple[str, str], tuple[datetime, float]] = {}
    for value in values:
        for output, number in value.values.items():
            key = (value.indicator, output)
            if value.time <= cut and (key not in earlier or value.time > earlier[key][0]):
                earlier[key] = (value.time, number)
    with psycopg.connect(xrp_db.url) as conn:
        got = queries.latest_indicators(conn, "okx", "XRP-ETH", timeframe)
        at_cut = queries.latest_indicators(conn, "okx", "XRP-ETH", timeframe, at=cut)
    assert {(r["indicator"], r["output"]): (r["time"], r["value"]) for r in got} == newest
    assert {(r["indicator"], r["output"]): (r["time"], r["value"]) for r in at_cut} == earlier
    assert len(newest) == 5  # ema_fast, rsi and macd's three outputs


def test_recent_signals_newest_first(xrp_db: Loaded) -> None:
    signals = sorted(
        (s for s in xrp_db.stream.indicators if isinstance(s, Signal)),
        key=lambda s: (s.time, s.timeframe),
        reverse=True,
    )
    assert signals, "the strategy fires on this tape"
    since = signals[0].time - timedelta(days=1)
    with psycopg.connect(xrp_db.url) as conn:
        last_day = queries.recent_signals(conn, "okx", "XRP-ETH", since=since, limit=1000)
        hourly = queries.recent_signals(conn, "okx", "XRP-ETH", "1h", limit=1000)
        three = queries.recent_signals(conn, "okx", "XRP-ETH", limit=3)
    assert [(r["time"], r["timeframe"], r["action"], r["values"]) for r in last_day] == [
        (s.time, s.timeframe, s.action, dict(s.values)) for s in signals if s.time > since
    ]
    assert [r["time"] for r in hourly] == [s.time for s in signals if s.timeframe == "1h"]
    assert len(three) == 3


def test_inputs_are_validated_before_any_sql() -> None:
    conn: Any = None  # never reached: validation fails first
    with pytest.raises(ValueError, match="unknown timeframe"):
        queries.latest_candles(conn, "okx", "XRP-ETH", "candles_1m; DROP TABLE trades")
    with pytest.raises(ValueError, match="unknown timeframe"):
        queries.latest_indicators(conn, "okx", "XRP-ETH", "2m")
    with pytest.raises(ValueError, match="limit"):
        queries.latest_candles(conn, "okx", "XRP-ETH", "1m", limit=0)
    with pytest.raises(ValueError, match="naive"):
        queries.candles_between(conn, "okx", "XRP-ETH", "1m", datetime(2019, 10, 12), datetime.now(UTC))
    with pytest.raises(ValueError, match="period"):
        queries.late_trade_counts(conn, datetime.now(UTC), datetime.now(UTC), timedelta(0))
