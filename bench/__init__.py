"""Benchmarks of wfray against raw Ray (run from the repo root: `python -m bench.<name>`).

Importing the package disables Ray's token authentication before anything imports Ray: the
benchmarks start their own local Ray instance and need no token file, and get no 401s.

Every benchmark prints its figures as JSON with `--json` and has a flag to run small (a
smaller size of the same workload): tests/e2e/test_bench_smoke.py runs each that way, so a
benchmark that no longer starts fails the test suite.
"""

import os

os.environ["RAY_AUTH_MODE"] = "disabled"
