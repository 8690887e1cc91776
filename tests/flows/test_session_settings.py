"""A session replays with the candle settings it was recorded with, whatever the settings say today."""

from __future__ import annotations

from decimal import Decimal

from configs.settings import Settings
from flows.session import recorded_contract_values


def test_the_recorded_contract_values_win_over_todays_settings() -> None:
    settings = Settings(contract_values={"BTC-USDT-SWAP": Decimal("0.01")})
    recorded = {"contract_values": {"BTC-USDT-SWAP": "0.001", "ETH-USDT-SWAP": "0.1"}}
    assert recorded_contract_values(recorded, settings) == {
        "BTC-USDT-SWAP": Decimal("0.001"),
        "ETH-USDT-SWAP": Decimal("0.1"),
    }


def test_a_recording_without_contract_values_uses_the_settings() -> None:
    settings = Settings(contract_values={"BTC-USDT-SWAP": Decimal("0.01")})
    assert recorded_contract_values({}, settings) == {"BTC-USDT-SWAP": Decimal("0.01")}
