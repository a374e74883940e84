"""Benchmarks of wfray against raw Ray (run from the repo root: `python -m bench.<name>`)."""
