"""``python -m connectors.okx.simulator --tape FILE [...]``: run the simulator until SIGTERM/Ctrl-C.

Once listening it prints one JSON line to stdout (``{"ready": true, "ws_public": .., "ws_business": ..,
"rest": ..}``); logs go to stderr. On SIGTERM or SIGINT it closes every connection with 1001 and exits 0.
A bad option, a missing tape or a port in use is told in one or two lines with exit code 2 (``--debug``
shows the traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import sys
from collections.abc import Sequence

from configs.errors import UserError, run_cli
from configs.logs import configure_logging
from configs.settings import load_settings
from connectors.okx.simulator.config import SimulatorConfig, parse_args
from connectors.okx.simulator.server import Simulator
from connectors.simulator_serving import serve_until_signalled


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args  # accepted anywhere; the simulator's own options are parsed below
    return run_cli(lambda: _serve([a for a in args if a != "--debug"]), debug=debug)


def _parse(argv: list[str]) -> SimulatorConfig:
    """The options, or a :class:`UserError` with argparse's one-line complaint (not the long usage)."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parse_args(argv)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
        complaint = (captured.getvalue().strip().splitlines() or ["bad arguments"])[-1]
        problem = complaint.split(": error: ", 1)[-1]
        fix = "python3 tcp.py sim --help lists the options."
        if "tape" in problem:
            fix = f"Name an OKX trades CSV with --tape (bundled ones: tests/data/tapes); {fix}"
        raise UserError(f"simulator: {problem}", fix) from None


def _serve(argv: list[str]) -> int:
    config = _parse(argv)
    configure_logging(
        load_settings(),
        "okx-simulator",
        level=logging.INFO,
        text_format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("okx-simulator.websockets").setLevel(logging.WARNING)
    try:
        asyncio.run(serve_until_signalled(Simulator(config), "okx-simulator"))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"simulator: port {config.port} on {config.host} is already in use.",
                "Choose another --port (0 picks a free one).",
            ) from exc
        raise UserError(f"simulator: cannot start: {exc}", "Check --host and --port.") from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
