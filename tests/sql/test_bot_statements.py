"""The bots' named reads on a real PostgreSQL, against sums and filters computed here from the rows
written: the summary's last point, P&L, exposure and fill count; one bot's equity and fills in a range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from configs.bots import parse_bot_config
from connectors.control_store import ControlStore
from sql.bot_statements import (
    BOT_EQUITY,
    BOT_EQUITY_BETWEEN,
    BOT_FILLS,
    BOT_FILLS_BETWEEN,
    BOT_SUMMARY,
    READS,
)
from sql.migrate import migrate

T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

# (close, cash, position, equity) per candle; the long bot buys at the 2nd open and holds
LONG_EQUITY = [(100.0, 5_000.0, 0.0, 5_000.0), (101.0, 0.0, 49.4, 4_989.4), (104.0, 0.0, 49.4, 5_137.6)]
SHORT_EQUITY = [(100.0, 20_100.0, -100.0, 10_100.0), (99.0, 20_100.0, -100.0, 10_200.0)]


@pytest.fixture
def loaded(pg_url: str) -> dict[str, Any]:
    migrate(pg_url, "off")
    migrated = pg_url

    def bot(name: str, **changes: Any) -> Any:
        data = {"name": name, "symbol": "BTC-USDT", "timeframe": "1m", "strategy": "ema_crossover"}
        return parse_bot_config(data | changes)

    with ControlStore(migrated) as store:
        ids = {
            "long": store.add_bot(bot("long", account={"cash": 5_000})).bot_id,
            "short": store.add_bot(bot("short", timeframe="5m", account={"short": True})).bot_id,
            "idle": store.add_bot(bot("idle", strategy="rsi_reversion")).bot_id,
        }
        store.start_bot("long")
    with psycopg.connect(migrated) as conn:  # what the flow writes
        for key, points in (("long", LONG_EQUITY), ("short", SHORT_EQUITY)):
            for n, point in enumerate(points):
                conn.execute(
                    "INSERT INTO bot_equity VALUES (%s, %s, %s, %s, %s, %s)",
                    (ids[key], T0 + (n + 1) * MINUTE, *point),
                )
        fills = [
            (ids["long"], T0 + MINUTE, 0, T0 + MINUTE, "buy", 101.0, 49.4, 4.99),
            (ids["long"], T0 + 2 * MINUTE, 0, T0 + 2 * MINUTE, "sell", 103.0, 49.4, 5.08),
            (ids["long"], T0 + 2 * MINUTE, 1, T0 + 2 * MINUTE, "buy", 103.0, 48.0, 4.94),
            (ids["short"], T0, 0, T0, "sell", 100.0, 100.0, 10.0),
        ]
        conn.cursor().executemany("INSERT INTO bot_fills VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", fills)
    return {"url": migrated, "ids": ids}


def read(url: str, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    assert set(params) == statement.parameters
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(statement.text, params).fetchall()


def test_summary(loaded: dict[str, Any]) -> None:
    rows = {r["name"]: r for r in read(loaded["url"], BOT_SUMMARY, {})}
    assert list(rows) == ["idle", "long", "short"]
    for name, points, cash in (("long", LONG_EQUITY, 5_000.0), ("short", SHORT_EQUITY, 10_000.0)):
        row = rows[name]
        close, _, position, equity = points[-1]
        assert row["time"] == T0 + len(points) * MINUTE
        assert (row["close"], row["position"], row["equity"], row["start_cash"]) == (
            close,
            position,
            equity,
            cash,
        )
        assert row["pnl"] == pytest.approx(equity - cash)
        assert row["pnl_pct"] == pytest.approx((equity - cash) / cash * 100)
        assert row["exposure"] == pytest.approx(abs(position * close) / equity)
    assert (rows["long"]["fills"], rows["short"]["fills"], rows["idle"]["fills"]) == (3, 1, 0)
    assert (rows["long"]["state"], rows["idle"]["state"]) == ("running", "created")
    assert rows["idle"]["strategy"] == "rsi_reversion" and rows["short"]["timeframe"] == "5m"
    assert rows["short"]["config"]["account"]["short"] is True
    idle = rows["idle"]
    assert [idle[k] for k in ("time", "equity", "pnl", "exposure", "position")] == [None] * 5


def test_equity_newest_points_oldest_first(loaded: dict[str, Any]) -> None:
    rows = read(loaded["url"], BOT_EQUITY, {"bot_id": loaded["ids"]["long"], "limit": 2})
    assert [r["time"] for r in rows] == [T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    assert [r["equity"] for r in rows] == [p[3] for p in LONG_EQUITY[1:]]


def test_fills_since(loaded: dict[str, Any]) -> None:
    bot_id = loaded["ids"]["long"]
    every = read(loaded["url"], BOT_FILLS, {"bot_id": bot_id, "since": None})
    assert [(r["time"], r["seq"], r["side"]) for r in every] == [
        (T0 + MINUTE, 0, "buy"),
        (T0 + 2 * MINUTE, 0, "sell"),
        (T0 + 2 * MINUTE, 1, "buy"),
    ]
    later = read(loaded["url"], BOT_FILLS, {"bot_id": bot_id, "since": T0 + 2 * MINUTE})
    assert later == every[1:]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, None),
        (T0 + MINUTE, T0 + 2 * MINUTE),
        (T0 + 2 * MINUTE, None),
        (None, T0),
        (T0 + 3 * MINUTE, T0),
    ],
)
def test_ranges_are_inclusive(loaded: dict[str, Any], start: datetime | None, end: datetime | None) -> None:
    def inside(t: datetime) -> bool:
        return (start is None or t >= start) and (end is None or t <= end)

    bot_id = loaded["ids"]["long"]
    params = {"bot_id": bot_id, "start": start, "end": end}
    every_fill = read(loaded["url"], BOT_FILLS, {"bot_id": bot_id, "since": None})
    assert read(loaded["url"], BOT_FILLS_BETWEEN, params) == [f for f in every_fill if inside(f["time"])]
    every_point = read(loaded["url"], BOT_EQUITY, {"bot_id": bot_id, "limit": 100})
    assert len(every_point) == len(LONG_EQUITY)
    assert read(loaded["url"], BOT_EQUITY_BETWEEN, params) == [p for p in every_point if inside(p["time"])]


def test_reads_bind_only_named_parameters() -> None:
    assert {r.name: r.parameters for r in READS} == {
        "bot_summary": frozenset(),
        "bot_equity": {"bot_id", "limit"},
        "bot_fills": {"bot_id", "since"},
        "bot_equity_between": {"bot_id", "start", "end"},
        "bot_fills_between": {"bot_id", "start", "end"},
    }
