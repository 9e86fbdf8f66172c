"""Benchmarks (run as scripts: ``python -m bench.breaker_bench``)."""
