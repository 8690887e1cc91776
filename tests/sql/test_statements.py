"""sql.statements without a database: every named read (each variant) compiles to text whose values are
all named bound parameters, once."""

from __future__ import annotations

from itertools import product

import pytest
from sqlalchemy import select

from sql import statements
from sql.schema import TIMEFRAMES, candles_1m


def every_statement() -> dict[str, statements.Statement]:
    found = {
        "reject_counts": statements.REJECT_COUNTS,
        "indicator_history": statements.INDICATOR_HISTORY,
        "symbols": statements.SYMBOLS,
        "collector_health_exists": statements.COLLECTOR_HEALTH_EXISTS,
        "collector_health": statements.COLLECTOR_HEALTH,
    }
    for tf in TIMEFRAMES:
        found[f"latest_candles {tf}"] = statements.LATEST_CANDLES[tf]
        found[f"candles_between {tf}"] = statements.CANDLES_BETWEEN[tf]
        found[f"latest_closes {tf}"] = statements.LATEST_CLOSES[tf]
    for flags in product([False, True], repeat=4):
        found[f"gaps {flags}"] = statements.gap_rows(*flags)
    for a, b in product([False, True], repeat=2):
        found[f"late_trade_counts {a} {b}"] = statements.late_trade_counts(a, b)
        found[f"recent_signals {a} {b}"] = statements.recent_signals(a, b)
    for at in (False, True):
        found[f"latest_indicators {at}"] = statements.latest_indicators(at)
    return found


@pytest.mark.parametrize(("name", "statement"), sorted(every_statement().items()))
def test_each_statement_binds_named_parameters_only(name: str, statement: statements.Statement) -> None:
    placeholders = {part.split(")s")[0] for part in statement.text.split("%(")[1:]}
    assert placeholders == statement.parameters
    assert all(not param.startswith("param_") for param in statement.parameters), name


def test_a_variant_is_compiled_once() -> None:
    assert statements.gap_rows(True, False, True, False) is statements.gap_rows(True, False, True, False)
    assert statements.recent_signals(True, True) is not statements.recent_signals(False, True)


def test_a_constant_bound_without_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="binds constants"):
        statements.Statement(select(candles_1m).limit(5))
