"""Simulator options: one frozen config, built by tests directly or from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from connectors.okx.simulator.continuation import LastTrade
from connectors.okx.simulator.faults import POISON_KINDS, REST_POISON_KINDS, FaultConfig


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What to replay and how. ``port=0`` binds a free port (see ``Simulator.start``)."""

    tapes: tuple[Path, ...]
    host: str = "127.0.0.1"
    port: int = 0
    speed: float = 1.0  # times real time; 0 = as fast as possible
    rebase_now: bool = False  # shift tape times so the replay starts at the current time
    rebase_align: float = 60.0  # the shift is a whole number of these seconds, so candles keep their grid
    start_offset: float = 0.0  # start the replay this many tape seconds after the first trade
    wait_for_subscriber: bool = False  # hold the clock until the first subscription
    legacy_fields: bool = False  # 2021-22 shapes: trades without count/source/seqId, acks without connId
    aggregate: bool = False  # one trades push per taker fill run (same ms, side, px) with count
    idle_timeout: float = 30.0  # OKX's 30 s rule, close 4004
    max_queue: int = 200_000  # pushes queued for one client before closing it with 4005
    ct_val: dict[str, Decimal] = field(default_factory=dict)  # contract values of derivatives
    # per instrument, the last trade (id, epoch ms) of an earlier run: ids and times continue after it
    continue_after: dict[str, LastTrade] = field(default_factory=dict)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if not self.tapes:
            raise ValueError("at least one tape is needed")
        for tape in self.tapes:
            if not Path(tape).is_file():
                raise ValueError(f"tape {tape} does not exist")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")
        if self.start_offset < 0:
            raise ValueError(f"start_offset must be >= 0, got {self.start_offset}")
        if self.rebase_align < 0.001:
            raise ValueError(f"rebase_align must be >= 0.001 s, got {self.rebase_align}")
        if self.idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0, got {self.idle_timeout}")
        if self.rebase_now and self.wait_for_subscriber:
            raise ValueError("rebase_now anchors the clock at start; it cannot wait for a subscriber")
        if self.continue_after and not self.rebase_now:
            raise ValueError("continue_after needs rebase_now: the replay must come after the last trade")
        for inst, (trade_id, _) in self.continue_after.items():
            if trade_id < 0:
                raise ValueError(f"continue_after {inst}: trade id must be >= 0, got {trade_id}")


def _ct_val(text: str) -> tuple[str, Decimal]:
    inst, _, value = text.partition("=")
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal(0)
    if not inst or not number.is_finite() or number <= 0:
        raise argparse.ArgumentTypeError(f"expected INSTID=POSITIVE_DECIMAL, got {text!r}")
    return inst, number


def _last_trade(text: str) -> tuple[str, LastTrade]:
    inst, _, rest = text.partition("=")
    trade_id, _, ms = rest.partition("@")
    if not inst or not (trade_id.isascii() and trade_id.isdigit() and ms.isascii() and ms.isdigit()):
        raise argparse.ArgumentTypeError(f"expected INSTID=TRADE_ID@EPOCH_MS, got {text!r}")
    return inst, (int(trade_id), int(ms))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.okx.simulator",
        description="Replay trade tapes as a local OKX v5 websocket (/ws/v5/public, /ws/v5/business) and "
        "REST (/api/v5/market/trades, history-trades) server on one port.",
        epilog="--debug (anywhere): a failure at start also shows its traceback.",
    )
    parser.add_argument("--tape", action="append", required=True, type=Path, help="tape CSV (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time; 0 = as fast as possible")
    parser.add_argument("--rebase-now", action="store_true", help="shift tape times so the replay starts now")
    parser.add_argument(
        "--rebase-align",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="make the --rebase-now shift a multiple of this (default 60: minute candles of "
        "the replay are the tape's, shifted); 86400 keeps every timeframe's grid",
    )
    parser.add_argument(
        "--start-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="start the replay this many tape seconds in; earlier trades are history",
    )
    parser.add_argument(
        "--wait-for-subscriber",
        action="store_true",
        help="hold the replay clock until the first subscription",
    )
    parser.add_argument(
        "--legacy-fields",
        action="store_true",
        help="2021-22 shapes: trades without count/source/seqId, acks without connId",
    )
    parser.add_argument(
        "--aggregate",
        action="store_true",
        help="aggregate consecutive fills (same ms, side, px) into one trades push",
    )
    parser.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--max-queue", type=int, default=200_000, help="queued pushes before closing 4005")
    parser.add_argument(
        "--ct-val",
        action="append",
        type=_ct_val,
        default=[],
        metavar="INSTID=VALUE",
        help="contract value of a derivative, for candle volumes (repeatable)",
    )
    parser.add_argument(
        "--continue-after",
        action="append",
        type=_last_trade,
        default=[],
        metavar="INSTID=TRADE_ID@EPOCH_MS",
        help="the last trade of an instrument from an earlier run (repeatable; needs --rebase-now): "
        "the replay's ids continue from TRADE_ID + 1 and its trades come after EPOCH_MS",
    )
    faults = parser.add_argument_group("fault injection (per connection)")
    faults.add_argument("--drop-every-seconds", type=float, metavar="N")
    faults.add_argument("--drop-after-messages", type=int, metavar="N")
    faults.add_argument("--notice-then-close", type=float, metavar="SECONDS")
    faults.add_argument("--malformed-every", type=int, metavar="N")
    faults.add_argument("--stall-after-messages", type=int, metavar="N")
    faults.add_argument("--stall-seconds", type=float, default=0.0, metavar="S")
    faults.add_argument("--duplicate-every", type=int, metavar="N")
    faults.add_argument("--reorder-every", type=int, metavar="N")
    kinds = ", ".join(POISON_KINDS)
    hostile = parser.add_argument_group(f"hostile feed (per connection; kinds: {kinds})")
    hostile.add_argument(
        "--poison-every",
        type=int,
        metavar="N",
        help="after every N-th push, a hostile frame of the next --poison kind",
    )
    hostile.add_argument(
        "--poison",
        action="append",
        default=[],
        metavar="KIND",
        help="hostile frame kind (repeatable, taken in turn)",
    )
    hostile.add_argument(
        "--poison-first", metavar="KIND", help="a hostile frame before each subscription's first push"
    )
    hostile.add_argument(
        "--rest-poison",
        choices=REST_POISON_KINDS,
        help="history-trades answers: an extra row outside the ids asked (id) or the newest "
        "row stamped an hour early (time)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = FaultConfig(
            drop_every_seconds=args.drop_every_seconds,
            drop_after_messages=args.drop_after_messages,
            notice_then_close=args.notice_then_close,
            malformed_every=args.malformed_every,
            stall_after_messages=args.stall_after_messages,
            stall_seconds=args.stall_seconds,
            duplicate_every=args.duplicate_every,
            reorder_every=args.reorder_every,
            poison_every=args.poison_every,
            poison=tuple(args.poison),
            poison_first=args.poison_first,
            rest_poison=args.rest_poison,
        )
        return SimulatorConfig(
            tapes=tuple(args.tape),
            host=args.host,
            port=args.port,
            speed=args.speed,
            rebase_now=args.rebase_now,
            rebase_align=args.rebase_align,
            start_offset=args.start_offset,
            wait_for_subscriber=args.wait_for_subscriber,
            legacy_fields=args.legacy_fields,
            aggregate=args.aggregate,
            idle_timeout=args.idle_timeout,
            max_queue=args.max_queue,
            ct_val=dict(args.ct_val),
            continue_after=dict(args.continue_after),
            faults=faults,
        )
    except ValueError as exc:
        parser.error(str(exc))
