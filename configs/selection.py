"""What to follow across exchanges: ``okx:BTC-USDT,binance:BTC-USDT`` -> (exchange, instrument) pairs.

An entry is ``exchange:INSTRUMENT``; an entry without ``exchange:`` belongs to ``default_exchange``
(so ``BTC-USDT,ETH-USDT`` keeps meaning OKX). Instrument ids are ``BASE-QUOTE`` in upper case (OKX
derivatives add a suffix: ``BTC-USDT-SWAP``); exchange names are lower case and must be known.
Order is kept; an entry listed twice is an error, as is an empty selection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

KNOWN_EXCHANGES: tuple[str, ...] = ("okx", "binance")
"""The exchanges a selection may name (``connectors.exchange.EXCHANGES``, which a test keeps equal)."""

_INSTRUMENT = re.compile(r"[A-Z0-9]+(?:-[A-Z0-9_]+)+")


class Followed(NamedTuple):
    """One instrument followed on one exchange."""

    exchange: str
    instrument: str

    def __str__(self) -> str:
        return f"{self.exchange}:{self.instrument}"


def parse_selection(
    value: str | Iterable[str],
    *,
    exchanges: Sequence[str] = KNOWN_EXCHANGES,
    default_exchange: str = "okx",
) -> tuple[Followed, ...]:
    """The pairs of a comma-separated selection (or of a list of entries); ValueError naming the entry."""
    entries = value.split(",") if isinstance(value, str) else list(value)
    out: list[Followed] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            if isinstance(value, str) and value.strip() == "":
                break
            raise ValueError("an empty entry in the selection (two commas, or a trailing comma)")
        name, sep, inst = text.rpartition(":")
        exchange = name.strip() if sep else default_exchange
        inst = inst.strip()
        if exchange not in exchanges:
            raise ValueError(f"{text!r}: unknown exchange {exchange!r}; known: {', '.join(exchanges)}")
        if _INSTRUMENT.fullmatch(inst) is None:
            raise ValueError(f"{text!r}: {inst!r} is not an instrument id such as BTC-USDT (upper case)")
        pair = Followed(exchange, inst)
        if pair in out:
            raise ValueError(f"{pair} is listed more than once")
        out.append(pair)
    if not out:
        raise ValueError("at least one instrument is required")
    return tuple(out)


def by_exchange(selection: Iterable[Followed]) -> dict[str, tuple[str, ...]]:
    """The instruments of each exchange, in selection order (exchanges in order of first mention)."""
    grouped: dict[str, list[str]] = {}
    for exchange, inst in selection:
        grouped.setdefault(exchange, []).append(inst)
    return {exchange: tuple(insts) for exchange, insts in grouped.items()}
