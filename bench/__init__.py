"""Benchmarks (not tests: pytest collects only tests/)."""
