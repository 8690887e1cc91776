"""``python3 tcp.py bots`` (``python -m app.bots``): manage the paper-trading bots the live flow runs
(docs/bots.md). Bots are paper trading only: no order ever leaves this machine.

    python3 tcp.py bots list
    python3 tcp.py bots add --name ema-btc --symbol BTC-USDT --timeframe 1m --strategy ema_crossover \\
        --param fast=9 --param slow=21 --cash 10000 --fee-bps 10
    python3 tcp.py bots add --file bot.yaml          # or: python3 tcp.py bots import bot.yaml
    python3 tcp.py bots start|pause|stop|remove|show NAME
    python3 tcp.py bots export NAME --format json -o bot.json

The database is the one ``up`` and the flows use (``DATABASE_URL``, else the embedded server, as for
``backtest``); a change is applied by the running flow within a second. A bad flag or file stops the
command with one line naming the field and the fix (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from configs.bots import (
    FORMATS,
    BotConfig,
    bot_config_problem,
    dump_bot_config,
    load_bot_config,
    parse_bot_config,
)
from configs.errors import UserError, run_cli
from connectors.control_store import BotRecord, ControlError, ControlStore
from market.strategies import STRATEGIES
from market.timeframes import TIMEFRAMES

PAPER = "Paper trading only: no order ever leaves this machine."
ACTIONS = ("list", "add", "show", "start", "pause", "stop", "remove", "export", "import")
FLAGS = {  # a configuration field and the flag of `add` that sets it
    "name": "--name",
    "exchange": "--exchange",
    "symbol": "--symbol",
    "timeframe": "--timeframe",
    "strategy": "--strategy",
    "params": "--param",
    "account.cash": "--cash",
    "account.fraction": "--fraction",
    "account.fee_bps": "--fee-bps",
    "account.slippage_bps": "--slippage-bps",
    "account.short": "--short",
    "close_on_stop": "--close-on-stop",
}
ACCOUNT_FLAGS = ("cash", "fraction", "fee_bps", "slippage_bps", "short")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 tcp.py bots",
        description=f"Manage the paper-trading bots the live flow runs (docs/bots.md). {PAPER}",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = p.add_subparsers(dest="action", required=True, metavar="|".join(ACTIONS))
    sub.add_parser("list", help="every bot with its state, equity, P&L, position and exposure")
    add = sub.add_parser("add", help="add a bot (state created) from flags or --file")
    add.add_argument("--file", type=Path, help="a bot file (.yaml/.yml/.json) instead of the flags")
    add.add_argument("--name", help="a-z, 0-9, _ and -, starting with a letter or digit")
    add.add_argument("--exchange", help="default okx")
    add.add_argument("--symbol", help="instrument, e.g. BTC-USDT")
    add.add_argument("--timeframe", help=f"one of {', '.join(TIMEFRAMES)} (default 1m)")
    add.add_argument("--strategy", help=f"one of {', '.join(STRATEGIES)}")
    add.add_argument("--param", action="append", default=[], metavar="K=V", help="strategy parameter")
    add.add_argument("--cash", type=float, help="starting cash, quote currency (default 10000)")
    add.add_argument("--fraction", type=float, help="of cash committed per entry (default 1.0)")
    add.add_argument("--fee-bps", type=float, help="fee per fill in basis points (default 10)")
    add.add_argument("--slippage-bps", type=float, help="slippage in basis points (default 0)")
    add.add_argument("--short", action="store_true", default=None, help="sell signals open shorts")
    add.add_argument(
        "--close-on-stop", action="store_true", default=None, help="on stop, close at the next open"
    )
    imported = sub.add_parser("import", help="add a bot from a file (as add --file)")
    imported.add_argument("file", type=Path, metavar="FILE")
    for action, words in (
        ("show", "a bot's configuration, state and last equity point"),
        ("start", "start (or resume) a created or paused bot"),
        ("pause", "pause a running bot: no fills until started again"),
        ("stop", "stop a bot for good (closes its position first if configured to)"),
        ("remove", "delete a bot with its fills, equity and state"),
    ):
        sub.add_parser(action, help=words).add_argument("name", metavar="NAME")
    export = sub.add_parser("export", help="write a bot's configuration as YAML or JSON")
    export.add_argument("name", metavar="NAME")
    export.add_argument("--format", choices=FORMATS, help="default: from -o's suffix, else yaml")
    export.add_argument("-o", "--output", type=Path, metavar="PATH", help="default: standard output")
    return p


# --- building a configuration ------------------------------------------------------------------------


def config_from_flags(args: argparse.Namespace) -> BotConfig:
    """The configuration ``add``'s flags describe; a bad one raises ``UserError`` naming the flag."""
    from pydantic import ValidationError

    from app.backtest import strategy_config

    data: dict[str, Any] = {"name": args.name, "symbol": args.symbol, "strategy": args.strategy}
    data = {key: value for key, value in data.items() if value is not None}
    data |= {"exchange": args.exchange or "okx", "timeframe": args.timeframe or "1m"}
    if args.param:  # parsed as backtest --param is: NAME=NUMBER
        profile = strategy_config(args.strategy or "", args.param, data["timeframe"])["profiles"][0]
        data["params"] = profile["strategies"][0]["params"]
    account = {key: getattr(args, key) for key in ACCOUNT_FLAGS if getattr(args, key) is not None}
    if account:
        data["account"] = account
    if args.close_on_stop is not None:
        data["close_on_stop"] = args.close_on_stop
    try:
        return parse_bot_config(data)
    except ValidationError as error:
        told = bot_config_problem(error, "bots add", FLAGS)
        raise UserError(told.problem, "See python3 tcp.py bots add --help and docs/bots.md.") from None


def config_from_file(path: Path) -> BotConfig:
    """The configuration of a bot file; a bad one raises ``UserError`` naming the file and field."""
    import json

    import yaml
    from pydantic import ValidationError

    from configs.errors import yaml_problem

    fix = "Fix the file (docs/bots.md shows one)."
    try:
        return load_bot_config(path)
    except ValidationError as error:
        raise bot_config_problem(error, str(path)) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file.", "Name a bot file in YAML or JSON.") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: {error} (JSON syntax error)", fix) from None
    except yaml.YAMLError as error:
        raise UserError(yaml_problem(error, path), fix) from None
    except ValueError as error:  # not .json/.yaml/.yml
        raise UserError(str(error), "Name a .yaml, .yml or .json file.") from None


def _add_config(args: argparse.Namespace) -> BotConfig:
    """The configuration ``add`` (from flags or ``--file``) or ``import`` names."""
    if args.action == "import":
        return config_from_file(args.file)
    if args.file is None:
        return config_from_flags(args)
    described = [f for f in FLAGS.values() if getattr(args, f[2:].replace("-", "_")) not in (None, [])]
    if described:
        raise UserError(f"--file and {described[0]} both given.", "Describe the bot in the file or by flags.")
    return config_from_file(args.file)


# --- showing -----------------------------------------------------------------------------------------


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%MZ")


def _strategy(config: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={v:g}" for k, v in (config.get("params") or {}).items())
    return f"{config['strategy']}({params})"


def summary_cells(row: Mapping[str, Any]) -> list[str]:
    """One bot of the summary read as the cells of ``list``."""
    series = f"{row['exchange']} {row['symbol']} {row['timeframe']}"
    head = [row["name"], row["state"], series, _strategy(row["config"])]
    if row["equity"] is None:
        return [*head, "-", "-", "flat", "-", str(row["fills"]), "-"]
    position = row["position"]
    held = "flat" if position == 0 else f"{'long' if position > 0 else 'short'} {abs(position):.8g}"
    return [
        *head,
        f"{row['equity']:,.2f}",
        f"{row['pnl']:+,.2f} ({row['pnl_pct']:+.2f} %)",
        held,
        f"{(row['exposure'] or 0) * 100:.1f} %",
        str(row["fills"]),
        _time(row["time"]),
    ]


HEAD = [
    "name",
    "state",
    "series",
    "strategy",
    "equity",
    "P&L",
    "position",
    "exposure",
    "fills",
    "last candle",
]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(cells[i]) for cells in [HEAD, *rows]) for i in range(len(HEAD))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in [HEAD, *rows]
    )


# --- the commands ------------------------------------------------------------------------------------


class BotsCommand:
    """The ``bots`` actions on one database, printing to ``out``."""

    def __init__(self, url: str, out: TextIO) -> None:
        self.url, self.out = url, out
        self.store = ControlStore(url)

    def say(self, text: str) -> None:
        print(text, file=self.out)

    def summary(self) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        from sql.bot_statements import BOT_SUMMARY

        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            return conn.execute(BOT_SUMMARY.text).fetchall()

    def record(self, name: str) -> BotRecord:
        record = self.store.bot(name)
        if record is None:
            raise ControlError(f"no bot named {name!r}")
        return record

    def list(self, args: argparse.Namespace) -> None:
        rows = self.summary()
        self.say(PAPER)
        self.say(table([summary_cells(r) for r in rows]) if rows else "No bots yet: add one with bots add.")

    def add(self, args: argparse.Namespace) -> None:
        record = self.store.add_bot(args.config)
        self.say(
            f"Added bot {record.name} (created) on {record.exchange} {record.symbol} {record.timeframe}."
        )
        self.say(f"Start it with: python3 tcp.py bots start {record.name}   ({PAPER})")

    def show(self, args: argparse.Namespace) -> None:
        record = self.record(args.name)
        row = next((r for r in self.summary() if r["name"] == record.name), None)
        self.say(PAPER)
        self.say(f"bot {record.name} (id {record.bot_id}): {record.state}")
        self.say(f"created {_time(record.created_at)}, state changed {_time(record.updated_at)}")
        self.say("config:\n  " + dump_bot_config(record.config, "yaml").rstrip().replace("\n", "\n  "))
        if row is not None:
            self.say(table([summary_cells(row)]))

    def change(self, args: argparse.Namespace) -> None:
        actions: dict[str, Callable[[str], BotRecord]] = {
            "start": self.store.start_bot,
            "pause": self.store.pause_bot,
            "stop": self.store.stop_bot,
        }
        record = actions[args.action](args.name)
        self.say(f"Bot {record.name} is {record.state}: the running flow applies it within a second. {PAPER}")

    def remove(self, args: argparse.Namespace) -> None:
        self.store.remove_bot(args.name)
        self.say(f"Removed bot {args.name} with its fills, equity and state.")

    def export(self, args: argparse.Namespace) -> None:
        record = self.record(args.name)
        suffix = args.output.suffix.lower() if args.output is not None else ""
        fmt: Literal["json", "yaml"] = "json" if (args.format or suffix.lstrip(".")) == "json" else "yaml"
        text = dump_bot_config(record.config, fmt)
        if args.output is None:
            self.out.write(text)
            return
        args.output.write_text(text, encoding="utf-8")
        self.say(f"Wrote bot {record.name} to {args.output} ({fmt}).")

    def run(self, args: argparse.Namespace) -> None:
        handlers: dict[str, Callable[[argparse.Namespace], None]] = {
            "list": self.list,
            "add": self.add,
            "import": self.add,
            "show": self.show,
            "start": self.change,
            "pause": self.change,
            "stop": self.change,
            "remove": self.remove,
            "export": self.export,
        }
        from psycopg.errors import UndefinedTable

        try:
            handlers[args.action](args)
        except ControlError as error:
            raise UserError(
                f"{error}.", "python3 tcp.py bots list shows the bots and their states."
            ) from None
        except UndefinedTable:
            raise UserError(
                "the database has no bots table: its schema is older than this code.",
                "Run python3 tcp.py migrate.",
            ) from None
        finally:
            self.store.close()


def database_url() -> str:
    """The database of ``up`` and the flows: ``DATABASE_URL``, else the embedded one (as for backtest)."""
    from app.resources import database_url as resolve
    from configs.settings import load_settings

    return resolve(load_settings())


def _main(argv: list[str], out: TextIO) -> int:
    args = parser().parse_args(argv)
    if args.action in ("add", "import"):
        args.config = _add_config(args)  # a bad flag or file is named before any database starts
    BotsCommand(database_url(), out).run(args)
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_cli(lambda: _main(argv, out or sys.stdout), debug="--debug" in argv)


if __name__ == "__main__":
    sys.exit(main())
