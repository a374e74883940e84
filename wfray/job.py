"""`python -m wfray.job MODULE:WORKFLOW [--input JSON] [--wait]`: a Ray batch job's entry
point, shipped with wfray (the command itself is wfray/entrypoints/job.py)."""

from __future__ import annotations

import sys

from wfray.entrypoints.job import main

if __name__ == "__main__":
    sys.exit(main())
