"""InMemoryRunStore: the RunStore contract in a dict, for tests and `wfray.testing`."""

from __future__ import annotations

from wfray.adapters.memory.reader import InMemoryRunReader
from wfray.adapters.memory.subscriptions import InMemorySubscriptions
from wfray.adapters.memory.writer import InMemoryRunWriter


class InMemoryRunStore(InMemoryRunWriter, InMemoryRunReader, InMemorySubscriptions):
    """Both sides of the port (writer.py, reader.py) on one set of dicts; keeps copies,
    never the caller's objects, so it behaves like a database."""

    def close(self) -> None:
        pass
