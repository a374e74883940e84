"""Every store names the rows of a batch it refuses, and commits the rest without them.

The poison guard (coordinator/poison.py) relies on it: memory, SQLite and PostgreSQL must
refuse the same things (a lone surrogate, an integer past 64 bits) and name them alike.
"""

from __future__ import annotations

import pytest

from tests.contract.test_run_store import (  # noqa: F401  (the fixtures)
    make_run,
    sqlite_file_url,
    store,
)
from wfray.application.batch import Batch
from wfray.application.ports import RunStore
from wfray.domain.errors import StaleWriteError, StoreRejectedError


@pytest.mark.parametrize("poison", ["input \ud800", 2**70])
def test_refused_rows_are_named_and_the_rest_commits(store: RunStore, poison: object) -> None:  # noqa: F811
    batch = Batch()
    for i in range(6):
        batch.insert_run(make_run(f"r{i}"))
    bad = make_run("bad")
    if isinstance(poison, str):
        bad.input_json = poison
    else:
        bad.priority = poison  # type: ignore[assignment]
    batch.insert_run(bad)
    with pytest.raises((StoreRejectedError, StaleWriteError)):
        store.commit(batch)
    assert store.find_runs(["r0"]) == {}  # nothing of a refused batch was written
    rejected = store.rejected_rows(batch)
    assert [(r.run_id, r.what, r.key) for r in rejected] == [("bad", "run", ("bad",))]
    assert rejected[0].reason
    assert store.find_runs(["r0"]) == {}  # naming them wrote nothing either
    store.commit(batch.without({"bad"}, set()))
    assert sorted(store.find_runs([f"r{i}" for i in range(6)] + ["bad"])) == [
        f"r{i}" for i in range(6)
    ]
