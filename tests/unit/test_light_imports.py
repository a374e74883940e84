"""The unit tier stays fast: what it imports pulls in no Ray, database or web stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

UNIT_TIER_IMPORTS = [
    "wfray",
    "wfray.domain.engine",
    "wfray.domain.queueing",
    "wfray.coordinator.coordinator",
    "wfray.adapters.memory.executor",
    "wfray.adapters.memory.store",
    "tests.fixtures.unit_flows",
]
HEAVY = ["ray", "sqlalchemy", "fastapi", "starlette", "httpx", "alembic", "psycopg"]


def test_unit_tier_imports_nothing_heavy() -> None:
    code = (
        f"import sys\nfor name in {UNIT_TIER_IMPORTS!r}: __import__(name)\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == []
