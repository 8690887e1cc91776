"""``python -m connectors.okx.simulator --tape FILE [...]``: run the simulator until SIGTERM/Ctrl-C.

Once listening it prints one JSON line to stdout (``{"ready": true, "ws_public": .., "ws_business": ..,
"rest": ..}``); logs go to stderr. On SIGTERM or SIGINT it closes every connection with 1001 and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import orjson

from connectors.okx.simulator.config import SimulatorConfig, parse_args
from connectors.okx.simulator.server import Simulator
from connectors.tape import TapeError


async def serve_until_signalled(config: SimulatorConfig) -> None:
    simulator = Simulator(config)
    await simulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(orjson.dumps({"ready": True, **simulator.urls}).decode() + "\n")
    sys.stdout.flush()
    await stop.wait()
    logging.getLogger("okx-simulator").info("signal received, shutting down")
    await simulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("okx-simulator.websockets").setLevel(logging.WARNING)
    try:
        asyncio.run(serve_until_signalled(config))
    except (TapeError, OSError) as exc:  # a broken tape or a port in use: say so, no traceback
        logging.getLogger("okx-simulator").error("cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
