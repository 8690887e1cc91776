"""What the embedded servers share: one owner per data directory, and ``start``/``stop`` as a context."""

from __future__ import annotations

import fcntl
import os
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO, Self


class DirectoryLock:
    """An exclusive ``flock`` on ``path`` while this process owns ``data_dir`` (the kernel drops it with
    the process, however it ends); the file holds the owner's pid. ``error`` is raised when another
    process holds it, naming the directory and what to do."""

    def __init__(self, path: Path, data_dir: Path, error: type[Exception]) -> None:
        self.path = path
        self.data_dir = data_dir
        self.error = error
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise self.error(
                f"{self.data_dir} is in use by another TCP Dashboard process (lock {self.path}).\n"
                "  Stop the other python3 tcp.py up (or flow), or set DATA_DIR to another directory."
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class EmbeddedServer(ABC):
    """A server owned by this process: ``start()`` returns its URL, ``stop()`` shuts it down; ``with``
    does both."""

    @abstractmethod
    def start(self) -> str: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
