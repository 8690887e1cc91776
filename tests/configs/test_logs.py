"""The logs: the JSON form's fields, the text form as before, the log files' rotation, expiry and one writer
per file, and the settings that choose them (configs/logs.py).

Oracles: each JSON line is read back with ``json.loads`` and compared with the record's own fields (its
time converted here with ``datetime``); the text form is matched against the layout ``logging.basicConfig``
was given before; rotation against the list of messages written; expiry against file times set with
``os.utime``."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from configs.logs import (
    JsonFormatter,
    LogFile,
    LogSettings,
    configure_logging,
    log_directory,
    remove_expired,
)
from configs.settings import ConfigError, Settings, load_settings

DAY = 86_400.0
KEYS = {"time", "level", "logger", "message", "process"}


@contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without the test harness's handlers (as in a process of its own), restored after."""
    root = logging.getLogger()
    saved, level, hooks = root.handlers[:], root.level, (sys.excepthook, threading.excepthook)
    root.handlers.clear()
    try:
        yield root
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved
        root.setLevel(level)
        sys.excepthook, threading.excepthook = hooks


def record(
    message: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object
) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "tcp.test", "levelno": logging.WARNING, "levelname": "WARNING", "msg": message, "args": args}
    )
    made.__dict__.update(extra)
    return made


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", **overrides)  # type: ignore[arg-type]


def test_a_json_line_holds_the_record_s_fields_with_its_utc_time_to_the_millisecond() -> None:
    made = record(exchange="okx", symbol="BTC-USDT")
    line = JsonFormatter("flow").format(made)
    entry = json.loads(line)
    assert entry.keys() == KEYS | {"exchange", "symbol"}
    assert (entry["level"], entry["logger"], entry["message"], entry["process"]) == (
        "WARNING",
        "tcp.test",
        "hello world",
        "flow",
    )
    assert (entry["exchange"], entry["symbol"]) == ("okx", "BTC-USDT")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    parsed = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert parsed.tzinfo == UTC
    assert parsed == datetime.fromtimestamp(made.created, UTC).replace(
        microsecond=datetime.fromtimestamp(made.created, UTC).microsecond // 1000 * 1000
    )


def test_a_json_line_leaves_out_what_the_record_does_not_know_and_stays_one_line() -> None:
    entry_line = JsonFormatter("up").format(record("two\nlines: %s", ("ünïcode",), symbol=None))
    assert "\n" not in entry_line
    entry = json.loads(entry_line)
    assert entry.keys() == KEYS
    assert entry["message"] == "two\nlines: ünïcode"


def test_a_json_line_carries_the_traceback_as_text() -> None:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        made = record(exc_info=sys.exc_info())
    entry = json.loads(JsonFormatter("flow").format(made))
    assert isinstance(entry["exc_info"], str)
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert entry["exc_info"].endswith("ZeroDivisionError: division by zero")


def test_the_text_form_is_unchanged_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with bare_root():
        written = configure_logging(settings(tmp_path), "flow")
        logging.getLogger("tcp.flows").info("started %d", 1, extra={"symbol": "BTC-USDT"})
        logging.getLogger("tcp.flows").debug("not at INFO")
    before = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO tcp\.flows: started 1"  # basicConfig's layout
    assert re.fullmatch(before + "\n", capsys.readouterr().err)
    assert written == tmp_path / "data" / "logs" / "flow.log"
    assert re.fullmatch(before + "\n", written.read_text())


def test_json_goes_to_stderr_and_the_file_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with bare_root():
        written = configure_logging(settings(tmp_path, log_format="json"), "okx-simulator")
        logging.getLogger("websockets").warning("x", extra={"exchange": "okx"})
    err = capsys.readouterr().err
    assert written is not None and err == written.read_text()
    entry = json.loads(err)
    assert entry.keys() == KEYS | {"exchange"} and entry["process"] == "okx-simulator"


def test_configuring_again_replaces_its_handlers_and_bokeh_s_but_not_a_harness_s(tmp_path: Path) -> None:
    with bare_root() as root:
        bokeh = logging.StreamHandler(sys.stderr)
        root.addHandler(bokeh)
        configure_logging(settings(tmp_path), "dashboard")
        configure_logging(settings(tmp_path), "dashboard")
        assert bokeh not in root.handlers
        assert sorted(type(h).__name__ for h in root.handlers) == ["LogFile", "StreamHandler"]
        assert [p.name for p in (tmp_path / "data" / "logs").glob("*.log")] == ["dashboard.log"]

    with bare_root() as root, open(os.devnull, "w") as devnull:
        harness = logging.StreamHandler(devnull)
        root.addHandler(harness)
        assert configure_logging(settings(tmp_path), "dashboard") is None
        assert root.handlers == [harness]


def test_without_file_logging_only_stderr(tmp_path: Path) -> None:
    with bare_root() as root:
        assert configure_logging(settings(tmp_path, logs=LogSettings(file=False)), "up") is None
        assert [type(h) for h in root.handlers] == [logging.StreamHandler]
    assert not (tmp_path / "data" / "logs").exists()


def test_a_directory_that_cannot_be_written_costs_only_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").write_text("a file where the directory would be")
    with bare_root():
        assert configure_logging(settings(tmp_path), "flow") is None
        logging.getLogger("tcp").warning("still logged")
    err = capsys.readouterr().err
    assert err.startswith(f"warning: no log file in {tmp_path / 'data' / 'logs'} (")
    assert err.rstrip().endswith("WARNING tcp: still logged")


def lines_of(directory: Path, name: str) -> list[str]:
    """The log's lines oldest first: ``name.log.<keep>`` .. ``name.log.1``, then ``name.log``."""
    rotated = sorted(directory.glob(f"{name}.log.*"), key=lambda p: -int(p.suffix[1:]))
    return [line for path in [*rotated, directory / f"{name}.log"] for line in path.read_text().splitlines()]


def test_rotation_by_size_keeps_the_newest_files_in_order(tmp_path: Path) -> None:
    handler = LogFile(tmp_path, "flow", LogSettings(max_mb=120 / 1024 / 1024, keep=2))
    handler.setFormatter(logging.Formatter("%(message)s"))
    messages = [f"line {i:03d} " + "x" * 40 for i in range(20)]  # 50 bytes each: two lines a file
    for message in messages:
        handler.handle(record(message, ()))
    handler.close()
    assert sorted(p.name for p in tmp_path.glob("flow.log*")) == ["flow.log", "flow.log.1", "flow.log.2"]
    assert lines_of(tmp_path, "flow") == messages[-6:]
    assert all(path.stat().st_size == 100 for path in tmp_path.glob("flow.log*"))


def age(path: Path, days: float) -> Path:
    path.touch()
    then = time.time() - days * DAY
    os.utime(path, (then, then))
    return path


def test_expired_files_are_deleted_at_start_and_at_each_rotation(tmp_path: Path) -> None:
    old = [age(tmp_path / name, 3) for name in ("flow.log.4", "replay.log", "flow-2.log.1")]
    young = [age(tmp_path / name, 1) for name in ("up.log", "up.log.1")]
    other = age(tmp_path / "notes.txt", 30)
    handler = LogFile(tmp_path, "flow", LogSettings(max_mb=100 / 1024 / 1024, keep=5, max_age_days=2))
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in [*young, other])

    later = [age(tmp_path / name, 3) for name in ("migrate.log", "up.log.2")]
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(record("x" * 60, ()))
    assert all(path.exists() for path in later)  # no rotation yet
    handler.handle(record("y" * 60, ()))  # over 100 bytes: rotates
    assert (tmp_path / "flow.log.1").exists()
    assert not any(path.exists() for path in later)
    assert all(path.exists() for path in [*young, other])
    handler.close()


def test_a_file_still_written_is_not_deleted_however_old(tmp_path: Path) -> None:
    quiet = LogFile(tmp_path, "dashboard", LogSettings())
    age(tmp_path / "dashboard.log", 30)
    assert remove_expired(tmp_path, 2 * DAY) == []
    quiet.close()
    assert remove_expired(tmp_path, 2 * DAY) == [tmp_path / "dashboard.log"]


def test_two_processes_of_one_name_write_two_files(tmp_path: Path) -> None:
    first = LogFile(tmp_path, "flow", LogSettings())
    second = LogFile(tmp_path, "flow", LogSettings())
    assert (Path(first.baseFilename).name, Path(second.baseFilename).name) == ("flow.log", "flow-2.log")
    first.close()
    third = LogFile(tmp_path, "flow", LogSettings())
    assert Path(third.baseFilename).name == "flow.log"
    second.close()
    third.close()


def test_log_format_json_and_the_logs_section_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOGS__MAX_AGE_DAYS", "3.5")
    monkeypatch.setenv("LOGS__DIRECTORY", str(tmp_path / "elsewhere"))
    loaded = load_settings()
    assert loaded.log_format == "json"
    assert loaded.logs == LogSettings(max_age_days=3.5, directory=tmp_path / "elsewhere")


def test_by_default_text_and_files_under_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOG_FORMAT", "LOGS__FILE", "LOGS__DIRECTORY", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    loaded = settings(tmp_path)
    assert (loaded.log_format, loaded.logs.file, log_directory(loaded)) == (
        "text",
        True,
        tmp_path / "data" / "logs",
    )


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("LOG_FORMAT", "yaml", "log_format"),
        ("LOGS__KEEP", "0", "logs.keep"),
        ("LOGS__MAX_MB", "0", "logs.max_mb"),
        ("LOGS__MAX_AGE_DAYS", "-1", "logs.max_age_days"),
        ("LOGS__ROTATE", "1", "logs.rotate"),
    ],
)
def test_a_bad_log_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"(?m)^  {re.escape(field)}: "):
        load_settings()


UNCAUGHT = """
import threading
from configs.logs import configure_logging
from configs.settings import Settings

configure_logging(Settings(), "flow")
thread = threading.Thread(target=lambda: 1 / 0, name="reader")
thread.start()
thread.join()
raise RuntimeError("a step failed")
"""


def test_an_uncaught_exception_is_in_the_file_and_on_stderr_as_before(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-c", UNCAUGHT], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "Exception in thread reader" in done.stderr  # Python's own hooks still print
    assert done.stderr.rstrip().endswith("RuntimeError: a step failed")
    lines = [json.loads(line) for line in (tmp_path / "logs" / "flow.log").read_text().splitlines()]
    assert [(e["level"], e["message"]) for e in lines] == [
        ("CRITICAL", "uncaught exception in thread reader"),
        ("CRITICAL", "uncaught exception"),
    ]
    assert lines[0]["exc_info"].endswith("ZeroDivisionError: division by zero")
    assert lines[1]["exc_info"].endswith("RuntimeError: a step failed")
