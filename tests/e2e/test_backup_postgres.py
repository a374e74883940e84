"""`wfray backup` and `wfray restore` on PostgreSQL (pg_dump, pg_restore), as subprocesses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import wfray_cli
from tests.e2e.test_cli_night import IDS, LONELY, TWIN_A, fill

pytestmark = pytest.mark.postgres


@pytest.fixture
def second_postgres_url(_postgres_admin: object) -> Iterator[str]:
    import sqlalchemy as sa

    admin: sa.Engine = _postgres_admin  # type: ignore[assignment]
    name = f"wfray_t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_postgresql_store_backs_up_and_restores_into_another_database(
    postgres_url: str, second_postgres_url: str, tmp_path: Path
) -> None:
    fill(postgres_url, "plain error")
    source = {"WFRAY_DATABASE_URL": postgres_url, "WFRAY_DATA_DIR": str(tmp_path / "one")}
    target = {"WFRAY_DATABASE_URL": second_postgres_url, "WFRAY_DATA_DIR": str(tmp_path / "two")}
    backed = wfray_cli(source, "backup", str(tmp_path / "backup"), "--json")
    assert backed.returncode == 0, backed.stderr
    manifest = json.loads(backed.stdout)
    assert (manifest["database"], manifest["store_file"]) == ("postgresql", "store.pgdump")
    assert manifest["schema_revisions"]
    assert wfray_cli(target, "db", "upgrade").returncode == 0  # a migrated, empty store is fine

    restored = wfray_cli(target, "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    listed = wfray_cli(target, "runs", "--json")
    assert sorted(r["run_id"] for r in json.loads(listed.stdout)) == sorted(IDS)
    shown = wfray_cli(target, "show", TWIN_A[:11], "--json")
    assert json.loads(shown.stdout)["run"]["status"] == "completed"

    again = wfray_cli(target, "restore", str(tmp_path / "backup"))
    assert again.returncode == 1 and "--force" in again.stderr
    forced = wfray_cli(target, "restore", str(tmp_path / "backup"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert wfray_cli(target, "show", LONELY[:8]).returncode == 0


def test_without_pg_dump_backup_fails_saying_what_to_do(postgres_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    env = {
        "WFRAY_DATABASE_URL": postgres_url,
        "WFRAY_DATA_DIR": str(tmp_path / "data"),
        "WFRAY_PG_BIN_DIR": str(empty),
    }
    assert wfray_cli(env, "db", "upgrade").returncode == 0
    failed = wfray_cli(env, "backup", str(tmp_path / "backup"))
    assert failed.returncode == 1
    assert f"pg_dump is not in {empty}" in failed.stderr
    assert "README" in failed.stderr and "Traceback" not in failed.stderr
    assert list((tmp_path / "backup").iterdir()) == []  # a failed backup leaves nothing
