"""Binance spot trades through the exchange interface (see docs/binance.md)."""
