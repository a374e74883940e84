"""The in-memory store's event subscriptions (as adapters/sqlalchemy/subscriptions.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from wfray.adapters.memory.store_base import InMemoryStoreBase


class InMemorySubscriptions(InMemoryStoreBase):
    def save_subscriptions(
        self, subscriptions: Sequence[tuple[str, str]], env_hash: str, now: datetime
    ) -> None:
        with self._lock:
            for workflow, event in subscriptions:
                self._subscriptions[(workflow, event)] = env_hash

    def subscription_envs(self, event: str) -> dict[str, str]:
        with self._lock:
            return {w: h for (w, e), h in self._subscriptions.items() if e == event}
