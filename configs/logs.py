"""Where a process's logs go and in what form: the ``logs`` settings and :func:`configure_logging`, which
each entry point calls once, after loading its settings (in place of ``logging.basicConfig``).

- **stderr**, as before: ``time LEVEL logger: message`` lines; with ``LOG_FORMAT=json`` one JSON object per
  line instead (:class:`JsonFormatter`).
- **a file** ``<process>.log`` under ``DATA_DIR/logs`` (``logs.directory``), in the same format, rotated
  when it reaches ``logs.max_mb``, keeping ``logs.keep`` older files (``.log.1`` the newest). Log files of
  that directory not written for ``logs.max_age_days`` are deleted when a process opens its file and at
  each rotation. One process writes one file: a second process of the same name running at the same time
  (two processes of a cluster on one host, a replay beside ``up``) writes ``<process>-2.log``; the
  ``<name>.lock`` files there say which names are taken. A directory that cannot be written costs only
  the file, said once on stderr. An exception nobody caught (a flow's step that raised) is written to
  the file too, as a CRITICAL record; stderr shows Python's traceback as before.

Records say which instrument they are about with ``extra={"exchange": "okx", "symbol": "BTC-USDT"}``; the
JSON form carries both, the text form is unchanged.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from configs.settings import Settings

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The text form: what ``logging.basicConfig`` was given before there was a JSON form."""
CONTEXT_FIELDS = ("exchange", "symbol")
"""Attributes a record may carry (``extra=``) that the JSON form includes."""
_LOG_FILE = re.compile(r"^(?P<name>.+)\.log(?:\.\d+)?$")
_INSTALLED = "_tcp_logs"
"""Marks the handlers :func:`configure_logging` installed, so a second call replaces them."""


class LogSettings(BaseModel):
    """The log files (``LOGS__FILE=false``, ``LOGS__MAX_AGE_DAYS=7``, ...); the level and the form of every
    line are the top-level ``log_level`` and ``log_format`` (``LOG_LEVEL``, ``LOG_FORMAT``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: bool = True
    """Also write each process's log to ``<directory>/<process>.log``."""
    directory: Path | None = None
    """Where the log files go (None: ``DATA_DIR/logs``)."""
    max_mb: float = Field(default=10.0, gt=0)
    """A log file is rotated when it reaches this size (MiB)."""
    keep: int = Field(default=5, ge=1, le=1000)
    """Rotated files kept per process (``<process>.log.1`` .. ``.log.<keep>``)."""
    max_age_days: float = Field(default=14.0, gt=0)
    """Log files not written for this long are deleted (at each start and each rotation)."""


def log_directory(settings: Settings) -> Path:
    return settings.logs.directory or settings.data_dir / "logs"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
    ``message``, ``process``; ``exchange`` and ``symbol`` when the record carries them; ``exc_info`` (the
    traceback as text) and ``stack_info`` when there is one. Never more than one line."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc_iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process,
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def utc_iso_ms(seconds: float) -> str:
    """``2024-08-09T00:05:00.123Z``: a POSIX time in UTC to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LogFile(RotatingFileHandler):
    """``<directory>/<name>.log`` for the process ``process`` (``name`` is ``process``, or
    ``process-2``, ... while another process holds that name), rotated by size; expired log files of
    the directory are deleted when it opens and at each rotation (:func:`remove_expired`)."""

    def __init__(self, directory: Path, process: str, settings: LogSettings) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._lock: IO[bytes] | None
        self._lock, name = _claim(directory, process)
        self.max_age_seconds = settings.max_age_days * 86_400
        try:
            super().__init__(
                directory / f"{name}.log",
                maxBytes=max(1, round(settings.max_mb * 1024 * 1024)),
                backupCount=settings.keep,
                encoding="utf-8",
            )
        except OSError:
            self._release()
            raise
        remove_expired(directory, self.max_age_seconds)

    def doRollover(self) -> None:
        super().doRollover()
        remove_expired(Path(self.baseFilename).parent, self.max_age_seconds)

    def close(self) -> None:
        super().close()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _claim(directory: Path, process: str) -> tuple[IO[bytes], str]:
    """Hold ``<name>.lock`` for the first free name among ``process``, ``process-2``, ..."""
    for number in range(1, 1000):
        name = process if number == 1 else f"{process}-{number}"
        handle = open(directory / f"{name}.lock", "ab")  # held until the handler closes
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return handle, name
    raise OSError(f"999 processes named {process} already log there")


def _in_use(lock: Path) -> bool:
    """A running process holds this lock (writes the log file it names)."""
    try:
        handle = open(lock, "rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def remove_expired(directory: Path, max_age_seconds: float, now: float | None = None) -> list[Path]:
    """Delete the log files of ``directory`` (``*.log``, ``*.log.<n>``) last written more than
    ``max_age_seconds`` before ``now``, except a ``.log`` a running process still writes; returns them."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(directory.iterdir()):
        match = _LOG_FILE.match(path.name)
        if match is None:
            continue
        try:
            if now - path.stat().st_mtime <= max_age_seconds:
                continue
            if path.suffix == ".log" and _in_use(directory / f"{match['name']}.lock"):
                continue
            path.unlink()
        except OSError:  # gone already, or not ours to delete: the next pass tries again
            continue
        removed.append(path)
    return removed


def configure_logging(
    settings: Settings, process: str, *, level: int | str | None = None, text_format: str = TEXT_FORMAT
) -> Path | None:
    """Send the root logger's records to stderr and, with ``logs.file``, to the process's log file, in
    the form ``log_format`` says, at ``level`` (default ``log_level``); returns the file written, if any.

    ``process`` names the file (``flow``, ``up``, ``dashboard``, ``okx-simulator``, ...). Calling it
    again replaces what an earlier call installed, and a plain stderr handler someone installed before
    (Bokeh's) is replaced too; any other handler already on the root logger (a test harness's) means the
    logging of this process is set up elsewhere, and it changes nothing, as ``logging.basicConfig``."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _INSTALLED, False) or _plain_stderr(h)]:
        root.removeHandler(handler)
        handler.close()
    if root.handlers:
        return None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    written = None
    if settings.logs.file:
        directory = log_directory(settings)
        try:
            handler = LogFile(directory, process, settings.logs)
        except OSError as error:
            reason = error.strerror or error
            print(f"warning: no log file in {directory} ({reason}); logging to stderr only", file=sys.stderr)
        else:
            handlers.append(handler)
            written = Path(handler.baseFilename)
    formatter = JsonFormatter(process) if settings.log_format == "json" else logging.Formatter(text_format)
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _INSTALLED, True)
        root.addHandler(handler)
    root.setLevel(settings.log_level if level is None else level)
    if written is not None:
        _log_uncaught_exceptions()
    return written


def _log_uncaught_exceptions() -> None:
    """Exceptions nobody caught also go to the log files (Python's default hooks still print them)."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _uncaught
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _uncaught_in_thread


def _uncaught(kind: type[BaseException], value: BaseException, trace: TracebackType | None) -> None:
    _to_files(kind, value, trace, "uncaught exception")
    sys.__excepthook__(kind, value, trace)


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        name = args.thread.name if args.thread is not None else "?"
        _to_files(args.exc_type, args.exc_value, args.exc_traceback, f"uncaught exception in thread {name}")
    threading.__excepthook__(args)


def _to_files(
    kind: type[BaseException], value: BaseException, trace: TracebackType | None, message: str
) -> None:
    if issubclass(kind, KeyboardInterrupt | SystemExit):
        return
    record = logging.LogRecord("uncaught", logging.CRITICAL, "", 0, message, None, (kind, value, trace))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LogFile) and getattr(handler, _INSTALLED, False):
            handler.handle(record)


def _plain_stderr(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__)
