"""A paged fan-out's results as the step that takes them reads them: a page at a time through
its step services, each result once (one in the blob store: one read of it).

The reference (`domain/results.py` `collection_ref`) names the run, the fanned-out step and
its item count; a result that cannot be read (an item missing from the store, a blob gone)
fails the attempt with ResultUnreadableError naming the step and the item.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from wfray.application.ports import BlobStore, StepServices
from wfray.domain.errors import ResultUnreadableError

PAGE = 256  # items asked for per page (the coordinator may answer fewer)


def collected_text(
    ref: dict[str, Any], services: StepServices | None, blobs: BlobStore | None
) -> str:
    """All the items' results, in map order, as one JSON list."""
    out = io.StringIO()
    out.write("[")
    for index, text in _results(ref, 0, int(ref["count"]), services, blobs):
        if index:
            out.write(",")
        out.write(text)
    out.write("]")
    return out.getvalue()


def collected_item(
    ref: dict[str, Any], index: int, services: StepServices | None, blobs: BlobStore | None
) -> str:
    """Item `index`'s result alone."""
    if not 0 <= index < int(ref["count"]):
        raise ResultUnreadableError(
            f"{_what(ref)}: item {index} asked for, but the step has {ref['count']} items"
        )
    [(_, text)] = _results(ref, index, index + 1, services, blobs)
    return text


def _results(
    ref: dict[str, Any],
    start: int,
    end: int,
    services: StepServices | None,
    blobs: BlobStore | None,
) -> Iterator[tuple[int, str]]:
    if services is None:
        raise ResultUnreadableError(f"{_what(ref)}: no step services here to read them through")
    run_id, step = str(ref["run"]), str(ref["step"])
    expected = start
    while expected < end:
        try:
            page = services.item_results(run_id, step, expected, min(PAGE, end - expected))
        except Exception as exc:
            raise ResultUnreadableError(f"{_what(ref)}: {_said(exc)}") from exc
        if not page:
            raise ResultUnreadableError(f"{_what(ref)}: item {expected} is not in the store")
        for index, text, blob in page[: end - expected]:
            if index != expected:
                raise ResultUnreadableError(f"{_what(ref)}: item {expected} is not in the store")
            yield index, _text(ref, index, text, blob, blobs)
            expected += 1


def _text(
    ref: dict[str, Any], index: int, text: str | None, blob: str | None, blobs: BlobStore | None
) -> str:
    if blob is None:
        return text or "null"
    if blobs is None:
        raise ResultUnreadableError(f"{_what(ref)}: item {index} is in the blob store, none here")
    try:
        return blobs.get(blob).decode()
    except Exception as exc:
        raise ResultUnreadableError(
            f"{_what(ref)}: item {index} could not be read from the blob store: {_said(exc)}"
        ) from exc


def _what(ref: dict[str, Any]) -> str:
    return f"the results of step {ref.get('step')!r} of run {ref.get('run')!r} could not be read"


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
