"""Running the system: the run command ``up`` (``python -m app.stack up``, what ``python3 tcp.py up``
runs) with its process supervisor and status lines, the resources the flows' entry points resolve
(settings, the database and Redis to use, the sinks of a real run) and the embedded PostgreSQL and Redis
servers of a zero-setup run.

Everything below may be imported here; nothing below imports this package, with two exceptions, neither
of which runs on import: a flow module's ``flow`` (what ``python -m bytewax.run flows.okx`` runs) is built
by this package on first access, from inside the module's ``__getattr__``; and a module's
``if __name__ == "__main__":`` block may hand its command to this package (``python -m flows.backtest``
runs ``app.backtest``).
"""
