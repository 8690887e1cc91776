"""Running a local exchange simulator as a process (``python -m connectors.<exchange>.simulator``):
start it, print its ready line, serve until SIGTERM/SIGINT, stop it."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping
from typing import Protocol

import orjson


class Served(Protocol):
    """What an exchange's simulator offers to be run: start, stop and the URLs it listens on."""

    @property
    def urls(self) -> Mapping[str, str]: ...

    async def start(self) -> object: ...

    async def stop(self) -> None: ...


async def serve_until_signalled(simulator: Served, log_name: str) -> None:
    """Start ``simulator``, print ``{"ready": true, <its urls>}`` as one JSON line on stdout (what ``up``
    and the tests wait for), serve until SIGTERM or SIGINT, then stop it."""
    await simulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(orjson.dumps({"ready": True, **simulator.urls}).decode() + "\n")
    sys.stdout.flush()
    await stop.wait()
    logging.getLogger(log_name).info("signal received, shutting down")
    await simulator.stop()
