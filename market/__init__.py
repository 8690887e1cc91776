"""Pure market domain: trades, candles, timeframes, indicators and strategies.

Nothing in this package performs I/O or imports bytewax, psycopg, redis or panel.
"""
