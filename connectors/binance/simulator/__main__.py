"""``python -m connectors.binance.simulator --tape FILE [...]``: run the simulator until SIGTERM/Ctrl-C.

Once listening it prints one JSON line to stdout (``{"ready": true, "ws": .., "rest": ..}``); logs go to
stderr. On SIGTERM or SIGINT it closes every connection and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from configs.logs import configure_logging
from configs.settings import load_settings
from connectors.binance.simulator.server import BinanceSimulator, BinanceSimulatorConfig
from connectors.simulator_serving import serve_until_signalled


def _last_trade(value: str) -> tuple[str, int, int]:
    inst, sep, rest = value.partition("=")
    trade_id, at, ms = rest.partition("@")
    if not (sep and at and trade_id.isdigit() and ms.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not INST=TRADE_ID@EPOCH_MS")
    return inst, int(trade_id), int(ms)


def parse_args(argv: Sequence[str]) -> BinanceSimulatorConfig:
    parser = argparse.ArgumentParser(prog="python -m connectors.binance.simulator")
    parser.add_argument("--tape", action="append", required=True, type=Path, help="trades CSV (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time; 0 = as fast as possible")
    parser.add_argument("--rebase-now", action="store_true", help="shift tape times so the replay starts now")
    parser.add_argument("--wait-for-subscriber", action="store_true")
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--pong-timeout", type=float, default=60.0)
    parser.add_argument("--max-age", type=float, default=24 * 3600.0, help="seconds a connection lives")
    parser.add_argument("--throttle-every", type=int, default=0, help="answer every n-th REST request 429")
    parser.add_argument(
        "--continue-after",
        action="append",
        type=_last_trade,
        default=[],
        metavar="INST=TRADE_ID@EPOCH_MS",
        help="the last trade of an instrument from an earlier run (repeatable; needs --rebase-now): "
        "the replay's ids continue from TRADE_ID + 1 and it starts now, after EPOCH_MS",
    )
    parser.add_argument("--drop-every", type=int, default=0, help="never push every n-th trade (REST has it)")
    parser.add_argument("--poison-every", type=int, default=0, help="an unreadable event after every n-th")
    args = parser.parse_args(list(argv))
    try:
        return BinanceSimulatorConfig(
            tapes=tuple(args.tape),
            host=args.host,
            port=args.port,
            speed=args.speed,
            rebase_now=args.rebase_now,
            wait_for_subscriber=args.wait_for_subscriber,
            ping_interval=args.ping_interval,
            pong_timeout=args.pong_timeout,
            max_age=args.max_age,
            throttle_every=args.throttle_every,
            continue_after=tuple(args.continue_after),
            drop_every=args.drop_every,
            poison_every=args.poison_every,
        )
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(
        load_settings(),
        "binance-simulator",
        level=logging.INFO,
        text_format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("binance-simulator.websockets").setLevel(logging.WARNING)
    asyncio.run(serve_until_signalled(BinanceSimulator(config), "binance-simulator"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
