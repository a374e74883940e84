"""The base of the stores that live beside the run store in its database (the audit trail,
the schedules): on the run store's engine, or on a URL of their own."""

from __future__ import annotations

from contextlib import AbstractContextManager

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import migrate
from wfray.adapters.sqlalchemy.engine import WRITE, create_engine, unavailable_as_store_error


class SideStore:
    """A store on the run store's engine (one pool, one migration check; shared, so `close`
    leaves it open) or on a URL (an engine of its own, disposed by `close`).

    Args:
        engine_or_url: the run store's engine, or a URL.
        create: with a URL, migrate the schema on start; otherwise only check it is current.
    """

    def __init__(self, engine_or_url: sa.Engine | str, *, create: bool = True) -> None:
        self._owns_engine = not isinstance(engine_or_url, sa.Engine)
        self._engine = (
            engine_or_url if isinstance(engine_or_url, sa.Engine) else create_engine(engine_or_url)
        )
        self._writer = self._engine.execution_options(**{WRITE: True})
        if self._owns_engine:
            migrate.prepare(self._engine, create)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def _errors(self) -> AbstractContextManager[None]:
        """Driver errors of an unreachable database as the store's StoreUnavailableError."""
        return unavailable_as_store_error(self._engine.url)
