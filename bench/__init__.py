"""Benchmarks: scripts that measure and print JSON figures (run them from the repo root, see README.md)."""
