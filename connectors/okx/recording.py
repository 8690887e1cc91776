"""Recording of a live OKX session: every input each partition's sequencer is given, with its receive
time, appended to gzip-compressed JSON-lines files under ``DATA_DIR/sessions/<session>/`` in the format
of :mod:`connectors.okx.session_format`, to be replayed by :mod:`connectors.okx.session`.

Files are flushed (a gzip sync point) at least every ``flush_seconds`` while inputs arrive and at every
connection loss, so a killed process loses only its last moments and its file reads up to the last
complete line; a file is rotated once ``rotate_bytes`` are written, and the oldest files of the
sessions directory beyond ``keep_files`` are deleted. See docs/reliability.md, "Recorded sessions".
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha1
from pathlib import Path
from typing import IO, Any

import orjson

from connectors.okx.session_format import SUFFIX, SessionHeader, encode_event
from market.sequencing import Action, Disconnected, Event, Limits, Position, Sequencer, Start

log = logging.getLogger(__name__)

_BLOCK = 64 * 1024


def new_session_id() -> str:
    """A name for this run's recording: its start in UTC and the process id."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"


@dataclass(frozen=True)
class SessionRecording:
    """Where and how a live source records its session (``configs.settings.RecordingSettings``)."""

    directory: Path
    """The sessions directory (``DATA_DIR/sessions``); this run writes to ``directory/session``."""
    rotate_bytes: int = 64 * 1024 * 1024
    keep_files: int = 200
    flow: Mapping[str, Any] = field(default_factory=dict)
    """The dataflow settings the session runs with (JSON values), kept in every header for the replay."""
    flush_seconds: float = 1.0
    session: str = field(default_factory=new_session_id)


def file_slug(partition: str) -> str:
    """A partition key as a file name: instruments joined by ``+``; long keys shortened with a digest."""
    slug = re.sub(r"[^A-Za-z0-9_+-]", "_", partition.replace(",", "+"))
    if len(slug) > 80:
        slug = f"{slug[:60]}~{sha1(partition.encode()).hexdigest()[:12]}"
    return slug


class SessionRecorder:
    """Appends one partition's header and inputs to its session files, rotating and pruning them.

    Thread-safe: the partition's network thread records inputs, the dataflow's thread ends the
    recording. A file that cannot be written ends the recording with one error in the log; the live
    flow goes on."""

    def __init__(self, recording: SessionRecording, partition: str) -> None:
        self.recording = recording
        self.partition = partition
        self.directory = recording.directory / recording.session
        self._slug = file_slug(partition)
        self._lock = threading.Lock()
        self._header: SessionHeader | None = None
        self._file: IO[bytes] | None = None
        self._zip: gzip.GzipFile | None = None
        self._number = -1
        self._flushed = 0.0
        self._lines: list[bytes] = []
        self._buffered = 0
        self._ended = False
        self._stopped = False

    @property
    def path(self) -> Path:
        """The file being written."""
        return self.directory / f"{self._slug}.{self._number:05d}{SUFFIX}"

    def begin(self, header: SessionHeader) -> None:
        with self._lock:
            self._header = header
            self._guarded(self._open)

    def record(self, event: Event) -> None:
        assert self._header is not None, "record before begin"
        line = orjson.dumps(encode_event(event, self._header.limits.raw_limit))
        urgent = isinstance(event, Start | Disconnected)
        with self._lock:
            self._guarded(lambda: self._write(line, urgent))

    def end(self, taken: int) -> None:
        """The dataflow took ``taken`` items and stops taking any: a replay ends there too."""
        with self._lock:
            if not self._ended:
                self._ended = True  # no rotation after this: the end line stays in the last file
                self._guarded(lambda: self._write(orjson.dumps({"e": "end", "taken": taken}), True))

    def close(self) -> None:
        """Write what is buffered and close the file; later inputs are not recorded."""
        with self._lock:
            self._guarded(self._close)
            self._stopped = True

    # ------------------------------------------------------------------------------------- internals
    def _guarded(self, action: Callable[[], None]) -> None:
        if self._stopped:
            return
        try:
            action()
        except OSError as error:
            self._stopped = True
            log.error("recording of %s stopped: cannot write %s: %s", self.partition, self.path, error)

    def _write(self, line: bytes, urgent: bool) -> None:
        self._lines.append(line)
        self._buffered += len(line)
        now = time.monotonic()
        if urgent or now - self._flushed >= self.recording.flush_seconds:
            self._compress()
            assert self._zip is not None and self._file is not None
            self._zip.flush()  # a sync point: everything so far reads back after a kill
            self._flushed = now
            if self._file.tell() >= self.recording.rotate_bytes and not self._ended:
                self._close()
                self._open()
        elif self._buffered >= _BLOCK:
            self._compress()

    def _compress(self) -> None:
        """Compress the buffered lines in one block (a third of the cost of compressing each alone)."""
        assert self._zip is not None
        if self._lines:
            self._lines.append(b"")
            self._zip.write(b"\n".join(self._lines))
            self._lines.clear()
            self._buffered = 0

    def _open(self) -> None:
        assert self._header is not None
        self._number += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("xb")
        self._zip = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=6, mtime=0)
        self._zip.write(orjson.dumps(self._header.line(self._number)) + b"\n")
        self._zip.flush()
        prune(self.recording.directory, self.recording.keep_files)

    def _close(self) -> None:
        if self._zip is not None and self._file is not None:
            self._compress()
            self._zip.close()
            self._file.close()
        self._zip = self._file = None


def prune(directory: Path, keep: int) -> None:
    """Delete the oldest session files of ``directory`` beyond ``keep`` (and sessions left empty)."""
    files = []
    for path in directory.glob(f"*/*{SUFFIX}"):
        try:
            files.append((path.stat().st_mtime_ns, str(path), path))
        except FileNotFoundError:  # pruned by another partition meanwhile
            continue
    files.sort()
    for _, _, path in files[: max(0, len(files) - keep)]:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:  # not empty
            pass


class RecordedSequencer(Sequencer):
    """A :class:`Sequencer` that records how it was built and every input before acting on it."""

    def __init__(
        self,
        recorder: SessionRecorder,
        exchange: str,
        instruments: Sequence[str],
        limits: Limits | None = None,
        *,
        positions: Mapping[str, Position] | None = None,
        end_ids: Mapping[str, int] | None = None,
        push_source: str = "ws",
        rest_source: str = "rest",
    ) -> None:
        super().__init__(
            exchange,
            instruments,
            limits,
            positions=positions,
            end_ids=end_ids,
            push_source=push_source,
            rest_source=rest_source,
        )
        self.recorder = recorder
        header = SessionHeader(
            recorder.recording.session,
            recorder.partition,
            exchange,
            tuple(dict.fromkeys(instruments)),
            dict(positions or {}),
            dict(end_ids or {}),
            self.limits,
            push_source,
            rest_source,
            recorder.recording.flow,
        )
        recorder.begin(header)

    def feed(self, event: Event) -> list[Action]:
        self.recorder.record(event)
        return super().feed(event)
