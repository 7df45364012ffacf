"""Helpers shared by tests and benchmarks (tiny models and data, the torch oracle)."""
