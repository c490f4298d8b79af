"""Pipelines over trained models: deployment variants (float, int8, pruned int8) and the benchmark
of registry models against their keras.applications twins, with their reports."""
