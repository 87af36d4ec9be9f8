"""Benchmarks: ``python -m bench.<name>`` from the repository root; each prints a table."""
