"""Benchmark scripts and the RAM-literature benchmark runner (a package so tests can import them).

Each script also runs directly: ``python benchmarks/NAME.py --help``.
"""
