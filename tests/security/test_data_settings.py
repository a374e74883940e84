"""Credentials stay out of what wfray prints: `wfray db` and the executors' config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from wfray.adapters.ray.executor import ExecutorConfig

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-Secret"


def test_wfray_db_upgrade_masks_the_password_of_the_database_url(
    postgres_url: str, tmp_path: Path
) -> None:
    # the test server trusts local connections, so any password is accepted (and must not show)
    url = sa.make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    env = {**os.environ, "WFRAY_DATABASE_URL": url, "WFRAY_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "wfray.entrypoints.cli", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    shown = " ".join(done.stdout.split())  # rich wraps long lines
    assert "schema is current: postgresql+psycopg://postgres:***@127.0.0.1" in shown


def test_the_executor_config_hides_an_object_store_secret_key() -> None:
    config = ExecutorConfig(blob_root=f"s3://AKIAEXAMPLE:{PASSWORD}@results/wfray")
    assert PASSWORD not in repr(config)
    assert "s3://AKIAEXAMPLE:***@results/wfray" in repr(config)
