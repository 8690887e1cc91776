"""Trades are COPYed in pieces of 1,000 rows: a batch stores every row once, and a re-delivered batch whose
conflict with stored rows comes after its first piece is still stored whole, once."""

from __future__ import annotations

from pathlib import Path

from connectors.database import DatabaseWriter
from tests.connectors.database_kit import rows, tape_trades


def test_a_batch_of_several_pieces_is_stored_exactly(migrated: str, tmp_path: Path) -> None:
    trades = tape_trades(3000)
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    for k in range(0, 3000, 2300):
        writer.write(trades[k : k + 2300])
    writer.close()
    stored = rows(migrated, "SELECT trade_id, price::text, size::text, time FROM trades ORDER BY trade_id")
    assert stored == [(t.trade_id, str(t.price), str(t.size), t.ts_event) for t in trades]


def test_a_redelivery_that_conflicts_after_the_first_piece_stores_every_row_once(
    migrated: str, tmp_path: Path
) -> None:
    trades = tape_trades(3000)
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write(trades[1500:2600])  # stored: the conflict comes in the second 1,000-row piece
    writer.write(trades)
    writer.close()
    stored = rows(migrated, "SELECT trade_id FROM trades ORDER BY trade_id")
    assert stored == [(t.trade_id,) for t in trades]
    assert writer.stats.trades_inserted == 3000 and writer.stats.trades_duplicate == 1100
