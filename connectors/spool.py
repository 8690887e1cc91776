"""The database sink's outage spool: batches kept on disk while the database is unreachable.

**Tied to one database.** A writer's spool lives in ``<root>/db-<fingerprint>/``, the fingerprint being
a hash of the URL's host, port, database name and user (never the password; ``target.json`` names them),
so a run pointed at another URL never sees it. Once connected, the writer records the server's identity
in ``server.json`` (``system_identifier`` of ``pg_control_system()``, ``current_database()`` and when the
schema's first migration was applied, which tells apart two databases cloned from one image) and stamps
it in every batch it spools. A spooled batch stamped with another identity than the connected server's
is never written: it is moved to ``quarantine/`` and reported.

**Format, version 1.** One JSON-lines file per batch, ``<unix ns>-<pid>-<seq>.batch``. Line 1 is the
header: ``{"format": "tcp-spool", "version": 1, "created_at", "target", "server", "rows", "sha256"}``
(``rows`` and ``sha256`` describe the lines after it). Every other line is one stored item:
``{"kind": "trade" | "candle" | "late_trade" | "reject" | "indicator" | "signal" | "gap", ...}`` with
the item's fields by name; decimals are strings (exact), times ISO 8601 UTC, raw bytes base64, floats
JSON numbers (``"nan"``/``"inf"`` as strings). A file that cannot be read back exactly (truncated,
corrupt, unknown format or version) is moved to ``quarantine/`` with a ``.why`` note and reported; it
never stops the others. Files are written to a temporary name, fsynced, then renamed.

**Bounded.** The spool holds at most ``max_bytes`` (``database.spool_max_mb``, shared by the workers).
A batch that does not fit raises :class:`SpoolFull`, whose one-line message says what is full, where,
how full, and what to do; the database sink lets it stop the flow (see docs/schema.md, "Outages").
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from connectors.okx.events import Gap
from market.types import Candle, IndicatorValue, Rejected, Signal, Trade, TradeBatch
from market.windowing import LateTrade

log = logging.getLogger(__name__)

StoredItem = Trade | TradeBatch | Candle | LateTrade | Rejected | IndicatorValue | Signal | Gap

FORMAT = "tcp-spool"
VERSION = 1
MB = 1024 * 1024


class SpoolFull(RuntimeError):
    """The spool has no room for another batch."""


class SpoolUnreadable(ValueError):
    """A spool file that cannot be read back exactly."""


@dataclass(frozen=True)
class ServerIdentity:
    """Which database a connection reached: cluster id, database name, first migration time."""

    system_identifier: str | None
    database: str
    migrated_at: str | None

    def describe(self) -> str:
        return f"system {self.system_identifier} database {self.database} migrated {self.migrated_at}"


@dataclass(frozen=True)
class SpooledBatch:
    server: ServerIdentity | None
    items: list[StoredItem]


# -- rows ------------------------------------------------------------------------------------------
def _plain(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: every time in this project is timezone-aware UTC")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Trade):
        return _fields(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"cannot spool a value of type {type(value).__name__}")


def _fields(item: Any) -> dict[str, object]:
    return {f.name: _plain(getattr(item, f.name)) for f in dataclasses.fields(item)}


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"a time must be an ISO 8601 string, not {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"naive time {value!r}")
    return parsed.astimezone(UTC)


def _decimal(value: object) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"a decimal must be a string, not {value!r}")
    return Decimal(value)


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"a float must be a number (or nan/inf), not {value!r}")
    return float(value)


def _raw(value: object) -> bytes:
    return base64.b64decode(str(value), validate=True)


def _floats(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f"values must be an object, not {value!r}")
    return {str(k): _float(v) for k, v in value.items()}


def _trade(value: object) -> Trade:
    if not isinstance(value, dict):
        raise ValueError(f"a trade must be an object, not {value!r}")
    trade: Trade = _build(Trade, value)
    return trade


_CONVERT: dict[object, Callable[[object], object]] = {
    Decimal: _decimal,
    datetime: _time,
    bytes: _raw,
    float: _float,
    Trade: _trade,
}


def _converter(hint: object) -> Callable[[object], object] | None:
    """How to read a field of this annotation back from JSON; None when JSON gives it as it is."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        inner = [_converter(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) != 1 or inner[0] is None:
            return None
        convert = inner[0]
        return lambda value: None if value is None else convert(value)
    if typing.get_origin(hint) is Mapping:
        return _floats
    return _CONVERT.get(hint)


@functools.cache
def _converters(cls: type) -> dict[str, Callable[[object], object]]:
    """Per field of a stored dataclass, by its annotation: decimals, times, bytes, floats, trades."""
    hints = typing.get_type_hints(cls)
    found = {f.name: _converter(hints[f.name]) for f in dataclasses.fields(cls)}
    return {name: convert for name, convert in found.items() if convert is not None}


def _build(cls: type, row: dict[str, Any]) -> Any:
    convert = _converters(cls)
    return cls(**{name: convert[name](value) if name in convert else value for name, value in row.items()})


_KINDS: dict[str, type] = {
    "trade": Trade,
    "candle": Candle,
    "late_trade": LateTrade,
    "reject": Rejected,
    "indicator": IndicatorValue,
    "signal": Signal,
    "gap": Gap,
}
_KIND_OF: dict[type, str] = {cls: kind for kind, cls in _KINDS.items()}


def encode_row(item: StoredItem) -> dict[str, object]:
    """One stored item (not a ``TradeBatch``) as a plain row: ``{"kind": ..., field: value, ...}``."""
    return {"kind": _KIND_OF[type(item)], **_fields(item)}


def decode_row(row: object) -> StoredItem:
    """The item a row of :func:`encode_row` describes; raises ``SpoolUnreadable`` if it is not one."""
    try:
        if not isinstance(row, dict):
            raise ValueError(f"a row must be an object, not {row!r}")
        fields = dict(row)
        item: StoredItem = _build(_KINDS[str(fields.pop("kind"))], fields)
    except (ValueError, TypeError, KeyError, ArithmeticError, binascii.Error) as error:
        raise SpoolUnreadable(f"bad row: {type(error).__name__}: {error}") from None
    return item


def _flatten(items: Iterable[StoredItem]) -> Iterable[StoredItem]:
    for item in items:
        if isinstance(item, TradeBatch):
            yield from item.trades
        else:
            yield item


# -- the spool -------------------------------------------------------------------------------------
def describe_target(url: str) -> dict[str, str]:
    """What identifies a database in a URL: host, port, database name, user (never the password)."""
    info = conninfo_to_dict(url)
    user = str(info.get("user") or "")
    host = str(info.get("host") or info.get("hostaddr") or "")
    return {
        "host": host,
        "port": str(info.get("port") or 5432),
        "dbname": str(info.get("dbname") or user),
        "user": user,
    }


def fingerprint(url: str) -> str:
    target = describe_target(url)
    return hashlib.sha256(json.dumps(target, sort_keys=True).encode()).hexdigest()[:16]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.rename(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Spool:
    """The batches one writer keeps on disk for one database, oldest first."""

    def __init__(self, root: Path, url: str, *, max_bytes: int) -> None:
        self.target = describe_target(url)
        self.directory = root / f"db-{fingerprint(url)}"
        self.quarantine_dir = self.directory / "quarantine"
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        target_file = self.directory / "target.json"
        if not target_file.exists():
            _write_atomically(target_file, json.dumps(self.target, sort_keys=True).encode())
        self.server = self._recorded_server()
        for stale in self.directory.glob("*.tmp"):  # a write the process did not finish: never acknowledged
            stale.unlink()
        self._seq = 0
        self._sizes = {path: path.stat().st_size for path in self.directory.glob("*.batch")}
        self._check_root(root)

    @property
    def where(self) -> str:
        t = self.target
        return f"{t['user']}@{t['host']}:{t['port']}/{t['dbname']}"

    @property
    def bytes_used(self) -> int:
        return sum(self._sizes.values())

    def pending(self) -> list[Path]:
        return sorted(self._sizes)

    def remember(self, server: ServerIdentity) -> None:
        """Record the identity of the server the URL reaches now; new batches are stamped with it."""
        if server == self.server:
            return
        if self.server is not None:
            log.warning(
                "the database at %s is not the one this spool recorded (%s, now %s); batches "
                "spooled for the earlier one are quarantined, not written",
                self.where,
                self.server.describe(),
                server.describe(),
            )
        _write_atomically(self.directory / "server.json", json.dumps(dataclasses.asdict(server)).encode())
        self.server = server

    def put(self, items: Sequence[StoredItem], *, why: str) -> Path:
        """Spool one batch; raises ``SpoolFull`` (``why``: why the database is not written) if it does
        not fit."""
        body = "".join(json.dumps(encode_row(i), separators=(",", ":")) + "\n" for i in _flatten(items))
        body_bytes = body.encode()
        header = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "target": self.target,
            "server": None if self.server is None else dataclasses.asdict(self.server),
            "rows": body.count("\n"),
            "sha256": hashlib.sha256(body_bytes).hexdigest(),
        }
        data = json.dumps(header).encode() + b"\n" + body_bytes
        used = self.bytes_used
        if used + len(data) > self.max_bytes:
            raise SpoolFull(
                f"database spool full: {self.directory} holds {len(self._sizes)} batch(es), "
                f"{used / MB:.2f} MB of the {self.max_bytes / MB:g} MB allowed, and the next batch needs "
                f"{len(data) / MB:.2f} MB more; the database {self.where} is not being written ({why}); "
                "stopping the flow so nothing is lost silently: bring the database back and restart (the "
                "spool is written first), or raise database.spool_max_mb (DATABASE__SPOOL_MAX_MB)"
            )
        self._seq += 1
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.batch"
        _write_atomically(path, data)
        self._sizes[path] = len(data)
        return path

    def read(self, path: Path) -> SpooledBatch:
        """A spooled batch; raises ``SpoolUnreadable`` if the file is not exactly what was written."""
        data = path.read_bytes()
        head, newline, body = data.partition(b"\n")
        try:
            header = json.loads(head)
        except ValueError:
            raise SpoolUnreadable("no readable header (not a spool file, or corrupt)") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise SpoolUnreadable("not a spool file (format is not tcp-spool)")
        if header.get("version") != VERSION:
            raise SpoolUnreadable(f"unknown spool version {header.get('version')!r} (this reader: {VERSION})")
        if not newline or hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise SpoolUnreadable("content does not match its checksum (truncated or corrupt)")
        try:
            lines = body.decode().splitlines()
            if len(lines) != header.get("rows"):
                raise SpoolUnreadable(f"{len(lines)} row(s), the header says {header.get('rows')}")
            items = [decode_row(json.loads(line)) for line in lines]
            server = None if header.get("server") is None else ServerIdentity(**header["server"])
        except (ValueError, TypeError) as error:
            raise SpoolUnreadable(f"bad content: {error}") from None
        return SpooledBatch(server, items)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._sizes.pop(path, None)

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a spooled batch aside with a note of why; it is never written."""
        self.quarantine_dir.mkdir(exist_ok=True)
        target = self.quarantine_dir / path.name
        (self.quarantine_dir / f"{path.name}.why").write_text(reason + "\n")
        path.replace(target)
        self._sizes.pop(path, None)
        return target

    def _recorded_server(self) -> ServerIdentity | None:
        path = self.directory / "server.json"
        try:
            return ServerIdentity(**json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:
            log.error("unreadable %s (%s): ignored; the server's identity is recorded again", path, error)
            return None

    def _check_root(self, root: Path) -> None:
        """Quarantine batches of an unknown database (an older layout); report other databases' spools."""
        aside = root / "quarantine"
        for legacy in sorted(root.glob("*.batch")):  # outside any database's directory: whose is unknown
            aside.mkdir(exist_ok=True)
            (aside / f"{legacy.name}.why").write_text(
                "outside any database's spool directory (an older format, database unknown): not read\n"
            )
            legacy.replace(aside / legacy.name)
            log.error("spool file %s of an unknown database and format quarantined in %s", legacy.name, aside)
        for other in sorted(root.glob("db-*")):
            waiting = len(list(other.glob("*.batch")))
            if other != self.directory and waiting:
                target = (other / "target.json").read_text() if (other / "target.json").exists() else "?"
                log.warning(
                    "%d batch(es) in %s are spooled for another database (%s): they are written "
                    "only by a run pointed at that database",
                    waiting,
                    other,
                    target,
                )
