"""The SQL store's event subscriptions: the runtime env runs started by an event run in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.store_base import SqlStoreBase
from wfray.adapters.sqlalchemy.tables import subscriptions as table


class SqlSubscriptions(SqlStoreBase):
    def save_subscriptions(
        self, subscriptions: Sequence[tuple[str, str]], env_hash: str, now: datetime
    ) -> None:
        """Upsert: the latest registration with an env is the deploy an event's runs take."""
        if not subscriptions:
            return
        rows = [
            {"workflow": w, "event": e, "env_hash": env_hash, "updated_at": now}
            for w, e in subscriptions
        ]
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["workflow", "event"],
            set_={"env_hash": stmt.excluded.env_hash, "updated_at": stmt.excluded.updated_at},
        )
        with self._errors(), self._writer.begin() as conn:
            conn.execute(stmt, rows)

    def subscription_envs(self, event: str) -> dict[str, str]:
        query = sa.select(table.c.workflow, table.c.env_hash).where(
            table.c.event == event, table.c.env_hash.is_not(None)
        )
        with self._errors(), self._engine.connect() as conn:
            return {row.workflow: row.env_hash for row in conn.execute(query)}
