"""The files an export writes (docs/export.md, "Formats"): CSV or parquet, a page of rows at a time.

- CSV: a header, then one line per row; times as ISO 8601 in UTC (``2019-10-12T00:01:00+00:00``, trade
  times always with microseconds), numbers as PostgreSQL stores them, NULL as an empty field.
- parquet: times as ``timestamp[us, tz=UTC]``, numbers as strings holding the same exact text (a
  ``numeric`` column has no fixed scale, which ``decimal128`` needs), integers as ``int32``/``int64``,
  row groups of 100,000 rows; the file's metadata describes the export (``tcp.export``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.export import ExportColumn

FORMATS = ("csv", "parquet")
ROW_GROUP_ROWS = 100_000
_ARROW = {
    "text": pa.string(),
    "numeric": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "time": pa.timestamp("us", tz="UTC"),
}


class ExportWriter(Protocol):
    """Writes pages of rows (tuples in the order of the export's columns), then :meth:`close`."""

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    """CSV on a text stream opened with ``newline=""``; ``timespec`` is that of ``datetime.isoformat``
    (``auto``: a whole second has no fraction; trades use ``microseconds``)."""

    def __init__(self, stream: IO[str], columns: Sequence[ExportColumn], timespec: str = "auto") -> None:
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow([c.name for c in columns])
        self._times = [i for i, c in enumerate(columns) if c.kind == "time"]
        self._timespec = timespec

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._writer.writerows(self._lines(rows))

    def _lines(self, rows: Iterable[tuple[Any, ...]]) -> Iterable[list[Any]]:
        times, timespec = self._times, self._timespec
        for row in rows:
            line = list(row)
            for i in times:
                if line[i] is not None:
                    line[i] = line[i].isoformat(timespec=timespec)
            yield line

    def close(self) -> None:
        pass


def arrow_schema(columns: Sequence[ExportColumn], described: Mapping[str, Any]) -> pa.Schema:
    """The parquet schema of ``columns``; ``described`` goes into the metadata as JSON (``tcp.export``)."""
    fields = [
        pa.field(
            c.name,
            _ARROW[c.kind],
            nullable=c.nullable,
            metadata={"sql_type": "numeric"} if c.kind == "numeric" else None,
        )
        for c in columns
    ]
    return pa.schema(fields, metadata={"tcp.export": json.dumps(dict(described))})


class ParquetWriter:
    """Parquet on a binary stream or path. Pages are converted to Arrow as they come and written as one
    row group once they hold ``group_rows`` rows or more (Arrow's columns of 100,000 rows take a few MB;
    readers skip and scan whole row groups, and a page of 10,000 rows would make small ones)."""

    def __init__(
        self,
        sink: Any,
        columns: Sequence[ExportColumn],
        described: Mapping[str, Any],
        group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        self.schema = arrow_schema(columns, described)
        self.group_rows = group_rows
        self._writer = pq.ParquetWriter(sink, self.schema)
        self._held: list[pa.RecordBatch] = []
        self._held_rows = 0

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        columns = zip(*rows, strict=True)
        arrays = [
            pa.array(values, type=field.type) for values, field in zip(columns, self.schema, strict=True)
        ]
        self._held.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self._held_rows += len(rows)
        if self._held_rows >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._held:
            self._writer.write_table(pa.Table.from_batches(self._held))  # one row group (up to 1Mi rows)
        self._held, self._held_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
