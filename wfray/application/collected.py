"""A paged fan-out's results as the step that takes them reads them: a page at a time through
its step services, each result once (one in the blob store: one read of it).

The reference (`domain/results.py` `collection_ref`) names the run, the fanned-out step and
its item count; a result that cannot be read (an item missing from the store, a blob gone)
fails the attempt with ResultUnreadableError naming the step and the item.

A map over such a fan-out reads one item per attempt: the page that holds it is kept, a few
pages per process, so the items that follow it (dispatched in map order, often to the same
worker) cost no call to the coordinator. A completed item's result never changes.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from wfray.application.ports import BlobStore, StepServices
from wfray.domain.errors import ResultUnreadableError

PAGE = 256  # items asked for per page (the coordinator may answer fewer)
KEPT_PAGES = 4  # pages of item results a process keeps for the maps over them

Row = tuple[int, str | None, str | None]


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
    row = _kept.row(ref, index, services)
    return _text(ref, index, row[1], row[2], blobs)


class _KeptPages:
    """The last few pages read for single items, by (fan-out, first index)."""

    def __init__(self) -> None:
        self._pages: OrderedDict[tuple[str, int], list[Row]] = OrderedDict()
        self._lock = threading.Lock()

    def row(self, ref: dict[str, Any], index: int, services: StepServices | None) -> Row:
        fan_out = json.dumps(ref, sort_keys=True)
        # held while a page is read: the attempts beside this one wait for it, not read it
        with self._lock:
            for (which, first), rows in self._pages.items():
                if which == fan_out and first <= index < first + len(rows):
                    return rows[index - first]
            rows = _page(ref, index, min(PAGE, int(ref["count"]) - index), services)
            if rows[0][0] != index:
                raise ResultUnreadableError(f"{_what(ref)}: item {index} is not in the store")
            contiguous = [row for offset, row in enumerate(rows) if row[0] == index + offset]
            self._pages[(fan_out, index)] = contiguous
            while len(self._pages) > KEPT_PAGES:
                self._pages.popitem(last=False)
            return rows[0]


_kept = _KeptPages()


def _page(ref: dict[str, Any], start: int, limit: int, services: StepServices | None) -> list[Row]:
    if services is None:
        raise ResultUnreadableError(f"{_what(ref)}: no step services here to read them through")
    try:
        rows = services.item_results(str(ref["run"]), str(ref["step"]), start, limit)
    except Exception as exc:
        raise ResultUnreadableError(f"{_what(ref)}: {_said(exc)}") from exc
    if not rows:
        raise ResultUnreadableError(f"{_what(ref)}: item {start} is not in the store")
    return rows


def _results(
    ref: dict[str, Any],
    start: int,
    end: int,
    services: StepServices | None,
    blobs: BlobStore | None,
) -> Iterator[tuple[int, str]]:
    expected = start
    while expected < end:
        page = _page(ref, expected, min(PAGE, end - expected), services)
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
