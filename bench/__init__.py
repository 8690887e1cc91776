"""Benchmarks of the pipeline's parts; ``python3 tcp.py bench`` runs them and writes docs/benchmarks.md."""
