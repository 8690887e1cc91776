"""A local Binance spot market-data simulator replaying trade tapes (see docs/binance.md)."""

from connectors.binance.simulator.server import BinanceSimulator, BinanceSimulatorConfig

__all__ = ["BinanceSimulator", "BinanceSimulatorConfig"]
