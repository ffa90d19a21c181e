"""Synthetic data generators shared by tests, examples and benchmarks (imported on demand)."""
