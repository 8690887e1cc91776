"""The outage spool: versioned plain rows that read back exactly, tied to one database, unreadable files
quarantined (never crashing the writer, never blocking the others), and a size bound that stops the flow
with a clear error."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from connectors.database import DatabaseSink, DatabaseWriter
from connectors.okx.events import Gap
from connectors.spool import (
    ServerIdentity,
    Spool,
    SpoolFull,
    SpoolUnreadable,
    StoredItem,
    decode_row,
    encode_row,
)
from market.types import Candle, IndicatorValue, Rejected, Signal, Trade, TradeBatch
from market.windowing import LateTrade
from sql.migrate import migrate

URL = "postgresql://tcp:s3cret-pw@db.example:6543/market"
UNREACHABLE = "postgresql://postgres@/nowhere?host=/nonexistent-socket-dir"
T = datetime(2024, 8, 9, 0, 1, 2, 345000, tzinfo=UTC)
MB = 1024 * 1024


def trade(trade_id: int = 7, **changes: object) -> Trade:
    base = Trade(
        "okx",
        "BTC-USDT",
        trade_id,
        Decimal("0.00141342"),
        Decimal("1E-8"),
        "sell",
        T,
        ts_recv=T + timedelta(microseconds=1500),
        count=3,
        seq_id=99,
        source="1",
        origin="rest",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def every_kind() -> list[StoredItem]:
    """One item of each stored kind, every field set away from its default."""
    close = datetime(2024, 8, 9, 0, 2, tzinfo=UTC)
    return [
        trade(),
        Candle(
            "okx",
            "BTC-USDT",
            "1m",
            close - timedelta(minutes=1),
            close,
            Decimal("61000.1"),
            Decimal("61010"),
            Decimal("60990.55"),
            Decimal("61000.10"),
            Decimal("0.12345678"),
            Decimal("7530.123456789012345678901234567890"),
            12,
            Decimal("61000.05"),
            100,
            111,
            complete=False,
        ),
        LateTrade(trade(8), candle_close=close, watermark=close + timedelta(seconds=2, microseconds=7)),
        Rejected(b"\x00\xff{not json", "malformed frame", T, source="okx-ws"),
        IndicatorValue(
            "okx", "BTC-USDT", "5m", close, "bbands", {"upper": 1.0000000000000002, "lower": -0.5}
        ),
        Signal("okx", "BTC-USDT", "1h", close, "ema_cross", "sell", "fast below slow", {"fast": 3.25}),
        Gap(
            "okx",
            "BTC-USDT",
            10,
            20,
            T,
            close,
            True,
            9,
            "reconnect",
            close,
            recovery_seconds=1.25,
            error="partial",
        ),
    ]


def test_every_kind_reads_back_exactly(tmp_path: Path) -> None:
    spool = Spool(tmp_path, URL, max_bytes=MB)
    items = every_kind()
    path = spool.put([*items, TradeBatch((trade(20), trade(21)))], why="test")
    batch = spool.read(path)
    assert batch.items == [*items, trade(20), trade(21)]
    assert [type(i) for i in batch.items] == [*map(type, items), Trade, Trade]
    value = IndicatorValue("okx", "BTC-USDT", "1m", T, "rsi", {"value": math.nan, "edge": math.inf})
    read = decode_row(json.loads(json.dumps(encode_row(value))))
    assert isinstance(read, IndicatorValue)
    assert math.isnan(read.values["value"]) and read.values["edge"] == math.inf


def test_a_spool_file_is_versioned_plain_json_lines(tmp_path: Path) -> None:
    spool = Spool(tmp_path, URL, max_bytes=MB)
    path = spool.put([trade(), Rejected(b"\x00\xff", "bad", T)], why="test")
    header, first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert (header["format"], header["version"], header["rows"]) == ("tcp-spool", 1, 2)
    assert header["target"] == {"host": "db.example", "port": "6543", "dbname": "market", "user": "tcp"}
    assert header["server"] is None
    assert first == {
        "kind": "trade",
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "trade_id": 7,
        "price": "0.00141342",
        "size": "1E-8",
        "side": "sell",
        "ts_event": "2024-08-09T00:01:02.345000+00:00",
        "ts_recv": "2024-08-09T00:01:02.346500+00:00",
        "count": 3,
        "seq_id": 99,
        "source": "1",
        "origin": "rest",
    }
    assert second == {
        "kind": "reject",
        "raw": "AP8=",
        "reason": "bad",
        "ts_recv": "2024-08-09T00:01:02.345000+00:00",
        "source": "okx",
    }
    assert list(tmp_path.rglob("*.tmp")) == []


def test_every_field_of_every_kind_is_spooled() -> None:
    for item in every_kind():
        row = encode_row(item)
        assert set(row) == {"kind"} | {f.name for f in dataclasses.fields(item)}, type(item)


def test_the_spool_directory_names_the_database_never_the_password(tmp_path: Path) -> None:
    same = Spool(tmp_path, URL.replace("s3cret-pw", "rotated"), max_bytes=MB)
    assert Spool(tmp_path, URL, max_bytes=MB).directory == same.directory
    others = {
        Spool(tmp_path, URL.replace(a, b), max_bytes=MB).directory
        for a, b in [
            ("/market", "/other"),
            ("6543", "6544"),
            ("db.example", "db2.example"),
            ("tcp:", "reader:"),
        ]
    }
    assert len(others) == 4 and same.directory not in others
    for path in tmp_path.rglob("*"):
        assert "s3cret" not in path.name and (path.is_dir() or b"s3cret" not in path.read_bytes())
    assert json.loads((same.directory / "target.json").read_text())["dbname"] == "market"


def _spool_three(directory: Path) -> tuple[Spool, list[Path]]:
    spool = Spool(directory, URL, max_bytes=MB)
    return spool, [spool.put([trade(i)], why="test") for i in (1, 2, 3)]


@pytest.mark.parametrize(
    "damage, complaint",
    [
        (lambda data: data[:-9], "checksum"),  # truncated
        (lambda data: data.replace(b'"trade_id":2', b'"trade_id":3'), "checksum"),  # corrupt
        (lambda data: data.replace(b'"version": 1', b'"version": 2'), "unknown spool version 2"),
        (lambda data: b"\x80\x05garbage", "no readable header"),
        (lambda data: data.split(b"\n")[0] + b"\n", "checksum"),  # the header alone
    ],
)
def test_a_damaged_file_is_refused_with_the_reason(
    tmp_path: Path, damage: Callable[[bytes], bytes], complaint: str
) -> None:
    spool, paths = _spool_three(tmp_path)
    paths[1].write_bytes(damage(paths[1].read_bytes()))
    with pytest.raises(SpoolUnreadable, match=complaint):
        spool.read(paths[1])
    assert spool.read(paths[0]).items == [trade(1)] and spool.read(paths[2]).items == [trade(3)]


def test_a_row_that_is_not_an_item_is_refused() -> None:
    good = encode_row(trade())
    naive = "2024-08-09T00:01:02"
    for bad in [
        {**good, "kind": "order"},
        {**good, "price": 1.5},
        {**good, "ts_event": naive},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "side"},
        [1, 2],
    ]:
        with pytest.raises(SpoolUnreadable):
            decode_row(bad)


def test_unreadable_files_are_quarantined_and_the_others_written(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(pg_url)
    spool = Spool(tmp_path, pg_url, max_bytes=MB)
    paths = [spool.put([trade(i, symbol="XRP-ETH")], why="test") for i in range(1, 6)]
    paths[0].write_bytes(paths[0].read_bytes()[:-20])  # truncated
    paths[2].write_bytes(paths[2].read_bytes().replace(b'"version": 1', b'"version": 9'))  # unknown version
    paths[3].write_bytes(b"\x80\x04\x95 not a spool file")  # corrupt
    writer = DatabaseWriter(pg_url, tmp_path)
    writer.write([trade(6, symbol="XRP-ETH")])
    writer.close()
    with psycopg.connect(pg_url) as conn:
        assert [r[0] for r in conn.execute("SELECT trade_id FROM trades ORDER BY 1")] == [2, 5, 6]
    quarantine = spool.directory / "quarantine"
    assert sorted(p.name for p in quarantine.glob("*.batch")) == sorted(paths[i].name for i in (0, 2, 3))
    assert "unknown spool version 9" in (quarantine / f"{paths[2].name}.why").read_text()
    assert writer.stats.batches_quarantined == 3 and writer.pending_batches() == []
    assert sum("not written" in r.getMessage() for r in caplog.records if r.levelname == "ERROR") == 3


def test_a_pickled_batch_of_an_older_version_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Tripwire:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (Path.touch, (marker,))

    (tmp_path / "00000000000000000001-1-000001.batch").write_bytes(pickle.dumps([Tripwire()]))
    spool = Spool(tmp_path, UNREACHABLE, max_bytes=MB)
    assert spool.pending() == [] and not marker.exists()
    aside = [p.name for p in (tmp_path / "quarantine").glob("*.batch")]
    assert aside == ["00000000000000000001-1-000001.batch"]


def test_the_server_identity_is_stamped_in_each_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, URL, max_bytes=MB)
    before = spool.put([trade(1)], why="test")
    identity = ServerIdentity("7713948943320973354", "market", "2024-08-09T00:00:00+00:00")
    spool.remember(identity)
    after = spool.put([trade(2)], why="test")
    assert spool.read(before).server is None and spool.read(after).server == identity
    assert Spool(tmp_path, URL, max_bytes=MB).server == identity  # remembered across runs


def test_a_full_spool_stops_with_a_clear_error(tmp_path: Path) -> None:
    writer = DatabaseWriter(UNREACHABLE, tmp_path, connect_timeout=1, spool_max_bytes=40_000)
    batch = [trade(i) for i in range(100)]  # about 30 kB spooled
    writer.write(batch)
    with pytest.raises(SpoolFull) as raised:
        writer.write(batch)
    message = str(raised.value)
    assert "\n" not in message
    for part in (
        "database spool full",
        str(writer.spool.directory),
        "1 batch(es)",
        "MB allowed",
        "postgres@/nonexistent-socket-dir:5432/nowhere",
        "DATABASE__SPOOL_MAX_MB",
        "restart",
    ):
        assert part in message, part
    assert sum(p.stat().st_size for p in writer.pending_batches()) <= 40_000
    assert writer.spool.read(writer.pending_batches()[0]).items == batch  # what was spooled is intact


def test_a_full_spool_stops_the_flow(tmp_path: Path) -> None:
    flow = Dataflow("spool_full")
    batches = [TradeBatch(tuple(trade(b * 1000 + i) for i in range(1000))) for b in range(8)]  # ~2.6 MB
    stream = op.input("in", flow, TestingSource(batches))
    op.output("db", stream, DatabaseSink(UNREACHABLE, tmp_path, connect_timeout=1, spool_max_mb=1))
    with pytest.raises(Exception) as raised:  # Bytewax wraps what the sink raised
        run_main(flow)
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("database spool full" in text and "DATABASE__SPOOL_MAX_MB" in text for text in chain)
    spooled = list(tmp_path.glob("*/db-*/*.batch"))
    assert 0 < sum(p.stat().st_size for p in spooled) <= MB
