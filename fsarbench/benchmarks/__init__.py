"""Benchmarks: the registry, split lists, preparation of user videos, and the built-in synth."""

from fsarbench.benchmarks.registry import BENCHMARKS, SPLITS, Benchmark, get_benchmark

__all__ = ["BENCHMARKS", "SPLITS", "Benchmark", "get_benchmark"]
