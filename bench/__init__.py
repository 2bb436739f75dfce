"""Benchmarks (issue 6): `python -m bench.<name>`; see bench/README.md."""
