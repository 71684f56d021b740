"""Benchmarks: ``python -m bench.heart`` (federated learning on Fed-Heart-Disease)."""
