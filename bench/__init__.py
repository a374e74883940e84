"""Benchmarks of wfray against raw Ray (run from the repo root: `python -m bench.<name>`).

Importing the package disables Ray's token authentication before anything imports Ray: the
benchmarks start their own local Ray instance and need no token file, and get no 401s.
"""

import os

os.environ["RAY_AUTH_MODE"] = "disabled"
