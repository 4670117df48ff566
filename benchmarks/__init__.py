"""Aisle's benchmark harness (not shipped with the package).

A regular package rather than a namespace one, so that ``python -m benchmarks.run`` finds this
directory even if some installed distribution ships a top-level ``benchmarks`` package.
"""
