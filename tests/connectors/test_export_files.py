"""The export's file writers on their own: parquet row groups gather pages up to their size and read
back as written (pyarrow), CSV writes times in UTC ISO 8601 and NULL as an empty field (csv module)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectors.export import ExportRange
from connectors.export_files import CsvWriter, ParquetWriter

TRADES = ExportRange("okx", "BTC-USDT", None).columns()
T0 = datetime(2024, 8, 9, tzinfo=UTC)


def trade(n: int) -> tuple[object, ...]:
    received = T0 + timedelta(milliseconds=n, microseconds=7) if n % 3 else None
    return (
        "okx",
        "BTC-USDT",
        n,
        T0 + timedelta(milliseconds=n),
        f"6500{n}.10",
        "0.00010000",
        "buy",
        received,
    )


def rows(count: int) -> list[tuple[object, ...]]:
    return [(*trade(n), 1, n * 10 if n % 2 else None, None, "ws") for n in range(count)]


@pytest.mark.parametrize(
    ("pages", "group_rows", "groups"), [([2, 2, 2, 1], 3, [4, 3]), ([5], 100, [5]), ([], 3, [])]
)
def test_parquet_row_groups_gather_pages(
    tmp_path: Path, pages: list[int], group_rows: int, groups: list[int]
) -> None:
    written = rows(sum(pages))
    path = tmp_path / "t.parquet"
    writer = ParquetWriter(path, TRADES, {"rows": "trades"}, group_rows=group_rows)
    at = 0
    for size in pages:
        writer.write(written[at : at + size])
        at += size
    writer.close()
    file = pq.ParquetFile(path)
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == groups
    assert [tuple(r.values()) for r in file.read().to_pylist()] == written
    assert file.schema_arrow.metadata[b"tcp.export"] == b'{"rows": "trades"}'


def test_csv_times_in_utc_iso_and_null_empty() -> None:
    stream = io.StringIO(newline="")
    writer = CsvWriter(stream, TRADES, timespec="microseconds")
    writer.write(rows(2))
    writer.close()
    header, first, second = csv.reader(io.StringIO(stream.getvalue()))
    assert header == [c.name for c in TRADES]
    assert first == ["okx", "BTC-USDT", "0", "2024-08-09T00:00:00.000000+00:00", "65000.10", "0.00010000"] + [
        "buy",
        "",
        "1",
        "",
        "",
        "ws",
    ]
    assert second[3:8] == ["2024-08-09T00:00:00.001000+00:00", "65001.10", "0.00010000", "buy"] + [
        "2024-08-09T00:00:00.001007+00:00"
    ]
    assert second[9] == "10"
