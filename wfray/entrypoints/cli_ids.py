"""Run ids as an operator types and reads them: abbreviated, as git abbreviates commits.

`wfray runs` shows each run by the shortest prefix (at least SHORT_ID_CHARS characters, the
same length for every row) that names one run in the whole store, not only on the page; every
command that takes a run id takes such a prefix. A prefix resolves through the store with a
bounded range query on the run id: an id that exists as typed wins, one run starting with it
is that run, several are listed (at most CANDIDATES_SHOWN) and refused with exit 2.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from wfray.application.ports import RunReader
from wfray.domain.ids import RUN_ID_PATTERN
from wfray.entrypoints.cli_support import CliError, Exit
from wfray.entrypoints.cli_text import printable

SHORT_ID_CHARS = 8
CANDIDATES_SHOWN = 10


def resolve_run_id(store: RunReader, typed: str) -> str:
    """The run id that `typed` names: itself if such a run exists, else the one run whose id
    starts with it. CliError: exit 3 when no run matches, exit 2 when several do."""
    if not typed:
        raise CliError("a run id (or the start of one) is required, got ''", Exit.USAGE)
    if store.find_runs([typed]):
        return typed
    # a text no run id can start with (a space, a control character) is only ever an exact id
    candidates = (
        store.run_ids_starting(typed, CANDIDATES_SHOWN + 1)
        if RUN_ID_PATTERN.fullmatch(typed)
        else []
    )
    if not candidates:
        raise CliError(f"no run with id {printable(typed)!r} (nor starting so)", Exit.NOT_FOUND)
    if len(candidates) == 1:
        return candidates[0]
    listed = "\n  ".join(candidates[:CANDIDATES_SHOWN])
    more = "\n  ..." if len(candidates) > CANDIDATES_SHOWN else ""
    raise CliError(
        f"run id prefix {typed!r} is ambiguous; it starts these runs:\n  {listed}{more}\n"
        "type more of the id",
        Exit.USAGE,
    )


def resolve_run_ids(store: RunReader, typed: Sequence[str]) -> list[str]:
    return [resolve_run_id(store, text) for text in typed]


def short_ids(store: RunReader, run_ids: Sequence[str]) -> dict[str, str]:
    """Each id's prefix of one common length, the shortest that names one run in the store
    (an id shorter than that is shown whole)."""
    length = SHORT_ID_CHARS
    ordered = sorted(set(run_ids))
    for before, after in itertools.pairwise(ordered):
        length = max(length, _common_prefix(before, after) + 1)  # unique on the page first
    for run_id in ordered:
        while length < len(run_id):
            others = [o for o in store.run_ids_starting(run_id[:length], 2) if o != run_id]
            if not others:
                break
            length = _common_prefix(run_id, others[0]) + 1
    return {run_id: run_id[:length] for run_id in run_ids}


def _common_prefix(one: str, other: str) -> int:
    size = 0
    for a, b in zip(one, other, strict=False):
        if a != b:
            break
        size += 1
    return size
