"""Runtime environments in the store, on every adapter: stored once per content hash,
referred to by runs; and migration 0012, which adds them, keeps stored runs and goes back."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from tests.contract.test_run_store import make_run, sqlite_file_url, store  # noqa: F401
from wfray.application.batch import Batch
from wfray.application.ports import RunStore
from wfray.domain.code_env import CodeEnv

NOW = datetime(2026, 12, 2, tzinfo=UTC)
ENV = CodeEnv(working_dir="gcs://_ray_pkg_abc.zip", env_var_names=("TOKEN",))


def test_an_env_is_stored_once_and_runs_refer_to_it(store: RunStore) -> None:  # noqa: F811
    store.save_runtime_env(ENV.hash, ENV.to_json())
    store.save_runtime_env(ENV.hash, '{"changed": true}')  # a second save changes nothing
    assert store.get_runtime_envs([ENV.hash, "0" * 64]) == {ENV.hash: ENV.to_json()}
    assert store.get_runtime_envs([]) == {}
    batch = Batch()
    batch.insert_run(make_run("with-env", env_hash=ENV.hash))
    batch.insert_run(make_run("without"))
    store.commit(batch)
    found = store.find_runs(["with-env", "without"])
    assert found["with-env"].env_hash == ENV.hash
    assert found["without"].env_hash is None
    assert CodeEnv.from_json(store.get_runtime_envs([ENV.hash])[ENV.hash]) == ENV


def test_migration_0012_keeps_stored_runs_and_goes_back(fresh_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    engine = sa.create_engine(fresh_url)
    try:
        migrate.upgrade(engine, "0011")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO runs (run_id, workflow, version, status, input_json,"
                    " created_at, queue, priority, trigger) VALUES"
                    " ('old', 'wf', 'v1', 'completed', 'null', :t, 'default', 0, 'client')"
                ),
                {"t": NOW},
            )
        migrate.upgrade(engine)  # through 0012 and what followed it: the store opens at head
        store = SqlRunStore(fresh_url, create=False)
        try:
            old = store.find_runs(["old"])["old"]
            assert old.env_hash is None and old.shown_version == "v1"
            store.save_runtime_env(ENV.hash, ENV.to_json())
            assert list(store.get_runtime_envs([ENV.hash])) == [ENV.hash]
        finally:
            store.close()
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0011")
        inspector = sa.inspect(engine)
        assert "env_hash" not in {c["name"] for c in inspector.get_columns("runs")}
        assert "env_hash" not in {c["name"] for c in inspector.get_columns("schedules")}
        assert "runtime_envs" not in inspector.get_table_names()
    finally:
        engine.dispose()


def test_a_subscription_names_the_env_of_its_latest_registration(
    store: RunStore,  # noqa: F811
) -> None:
    other = CodeEnv(working_dir="gcs://_ray_pkg_def.zip")
    assert store.subscription_envs("paid") == {}
    store.save_subscriptions([("invoice", "paid"), ("invoice", "refunded")], ENV.hash, NOW)
    store.save_subscriptions([("ledger", "paid")], ENV.hash, NOW)
    assert store.subscription_envs("paid") == {"invoice": ENV.hash, "ledger": ENV.hash}
    store.save_subscriptions([("invoice", "paid")], other.hash, NOW)  # a new deploy
    assert store.subscription_envs("paid") == {"invoice": other.hash, "ledger": ENV.hash}
    assert store.subscription_envs("refunded") == {"invoice": ENV.hash}
    store.save_subscriptions([], other.hash, NOW)
    assert store.subscription_envs("unknown") == {}


def test_migration_0014_adds_subscriptions_and_goes_back(fresh_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    engine = sa.create_engine(fresh_url)
    try:
        migrate.upgrade(engine, "0013")
        assert "subscriptions" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)
        store = SqlRunStore(fresh_url, create=False)
        try:
            store.save_subscriptions([("wf", "ev")], ENV.hash, NOW)
            assert store.subscription_envs("ev") == {"wf": ENV.hash}
        finally:
            store.close()
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0013")
        assert "subscriptions" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
