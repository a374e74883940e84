"""The BlobStore contract, run on every blob store: a local folder, a pyarrow filesystem URI
(file:// and pyarrow's in-memory mock://), and the in-memory store.

What the port promises (application/ports.py): a blob reads back as written; a list written
by `put_list` reads back whole or one item at a time, an item without reading the others;
keys are plain relative paths (anything else is a BlobKeyError and writes nothing); a blob
that is not there is a FileNotFoundError, an item that is not there an IndexError. Retention
deletes the blobs of whole runs (`delete_runs`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from wfray.adapters.blob import FsBlobStore
from wfray.adapters.memory import InMemoryBlobStore
from wfray.application.ports import BlobStore
from wfray.domain.errors import BlobKeyError
from wfray.domain.ids import blob_key

HOSTILE_KEYS = [
    "",
    "../x.json",
    "a/../../x.json",
    "a/./b",
    "/etc/x.json",
    "a//b",
    "a/",
    "a\\..\\b",
    "a\0b",
    "..",
]


class CountingBlobStore(BlobStore, Protocol):
    """The port plus what every adapter shares beyond it: read counters and retention."""

    reads: int
    bytes_read: int

    def delete_runs(self, run_ids: Any) -> int: ...


@pytest.fixture(params=["folder", "file-uri", "mock-uri", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CountingBlobStore]:
    if request.param == "folder":
        yield FsBlobStore(str(tmp_path / "blobs"))
    elif request.param == "file-uri":
        yield FsBlobStore(f"file://{tmp_path / 'blobs'}")
    elif request.param == "mock-uri":  # an object store's way in, without one
        yield FsBlobStore(f"mock:///{uuid.uuid4().hex}/blobs")
    else:
        yield InMemoryBlobStore()


def key(run_id: str = "r1", step: str = "make", attempt: int = 1) -> str:
    return blob_key(run_id, step, -1, attempt)


def items_of(*values: Any) -> list[bytes]:
    return [json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() for v in values]


# -- round trips ----------------------------------------------------------------------------


def test_a_blob_reads_back_as_written_under_a_uri_naming_its_key(blobs: CountingBlobStore) -> None:
    data = bytes(range(256)) * 3  # every byte value, NUL included
    uri = blobs.put(key(), data)
    assert uri.endswith("/r1/make/-1-1.json")
    assert blobs.get(uri) == data


def test_an_empty_blob_and_a_large_one_read_back_whole(blobs: CountingBlobStore) -> None:
    large = b"0123456789abcdef" * (3 * 1024 * 1024 // 16)  # 3 MiB
    empty_uri, large_uri = blobs.put(key(attempt=1), b""), blobs.put(key(attempt=2), large)
    assert blobs.get(empty_uri) == b""
    assert blobs.get(large_uri) == large


def test_blobs_of_different_keys_are_kept_apart(blobs: CountingBlobStore) -> None:
    uris = {k: blobs.put(k, k.encode()) for k in (key("r1"), key("r2"), key("r1", "other"))}
    assert len(set(uris.values())) == 3
    assert {k: blobs.get(u) for k, u in uris.items()} == {k: k.encode() for k in uris}


def test_writing_a_key_again_replaces_its_blob(blobs: CountingBlobStore) -> None:
    first = blobs.put(key(), b"first")
    second = blobs.put(key(), b"second")
    assert first == second and blobs.get(second) == b"second"


# -- lists ----------------------------------------------------------------------------------


def test_a_list_reads_back_whole_and_item_by_item(blobs: CountingBlobStore) -> None:
    values: list[Any] = [0, -1.5, "żółw ✓", {"a": [1, {"b": None}]}, [], "", True, None, "x" * 5000]
    uri = blobs.put_list(key(), items_of(*values))
    assert json.loads(blobs.get(uri)) == values
    assert [json.loads(blobs.get_item(uri, i)) for i in range(len(values))] == values


def test_an_item_is_read_without_reading_the_rest_of_the_list(blobs: CountingBlobStore) -> None:
    values = [f"item {i}: " + "x" * 1000 for i in range(2000)]  # about 2 MB
    uri = blobs.put_list(key(), items_of(*values))
    before = blobs.bytes_read
    assert json.loads(blobs.get_item(uri, 1234)) == values[1234]
    read = blobs.bytes_read - before
    assert 1000 < read < 2 * 1024, read  # its own bytes and its offsets, not 2 MB
    whole_before = blobs.bytes_read
    blobs.get(uri)
    assert blobs.bytes_read - whole_before > 2_000_000  # the counter counts whole reads too


def test_an_item_outside_the_list_is_an_index_error(blobs: CountingBlobStore) -> None:
    uri = blobs.put_list(key(), items_of("a", "b"))
    empty = blobs.put_list(key(attempt=2), [])
    assert json.loads(blobs.get(empty)) == []
    for where, index in [(uri, 2), (uri, -1), (uri, 10**6), (empty, 0)]:
        with pytest.raises(IndexError):
            blobs.get_item(where, index)


def test_an_item_of_a_list_written_whole_by_an_older_wfray_is_still_read(
    blobs: CountingBlobStore,
) -> None:
    uri = blobs.put(key(), b'[1,"two",{"three":3}]')  # no offsets beside it
    assert [json.loads(blobs.get_item(uri, i)) for i in range(3)] == [1, "two", {"three": 3}]
    for index in (3, -1):
        with pytest.raises(IndexError):
            blobs.get_item(uri, index)


def test_a_blob_written_over_a_list_is_read_as_the_new_blob(blobs: CountingBlobStore) -> None:
    blobs.put_list(key(), items_of("old", "list"))
    uri = blobs.put(key(), b'["new"]')
    assert json.loads(blobs.get(uri)) == ["new"]
    assert json.loads(blobs.get_item(uri, 0)) == "new"


# -- what is not there, and what must never be a path ---------------------------------------


def test_a_blob_that_is_not_there_is_a_file_not_found_error(blobs: CountingBlobStore) -> None:
    uri = blobs.put(key(attempt=1), b"here")
    missing = uri.replace("-1-1.json", "-1-2.json")
    with pytest.raises(FileNotFoundError):
        blobs.get(missing)
    with pytest.raises(FileNotFoundError):
        blobs.get_item(missing, 0)


@pytest.mark.parametrize("hostile", HOSTILE_KEYS)
def test_a_key_that_is_not_a_plain_relative_path_is_refused_and_nothing_is_written(
    blobs: CountingBlobStore, hostile: str
) -> None:
    with pytest.raises(BlobKeyError, match="not a plain relative path"):
        blobs.put(hostile, b"data")
    with pytest.raises(BlobKeyError, match="not a plain relative path"):
        blobs.put_list(hostile, items_of(1))
    # a URI of this store that climbs out of its root is refused when read, too
    inside = blobs.put(key(), b"inside")
    climbing = inside[: -len(key())] + hostile
    with pytest.raises(BlobKeyError):
        blobs.get(climbing)
    with pytest.raises(BlobKeyError):
        blobs.get_item(climbing, 0)


def test_refused_keys_leave_no_file_anywhere_under_the_folder(tmp_path: Path) -> None:
    blobs = FsBlobStore(str(tmp_path / "root" / "blobs"))
    for hostile in HOSTILE_KEYS:
        with pytest.raises(BlobKeyError):
            blobs.put(hostile, b"data")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# -- retention ------------------------------------------------------------------------------


def test_deleting_runs_takes_all_their_blobs_and_keeps_the_others(
    blobs: CountingBlobStore,
) -> None:
    old = [blobs.put(key("old"), b"1"), blobs.put_list(key("old", "map", 2), items_of(1, 2))]
    kept = blobs.put(key("old-but-kept"), b"kept")  # a run id that starts like a deleted one
    assert blobs.delete_runs(["old", "never-had-blobs"]) == 1
    for uri in old:
        with pytest.raises(FileNotFoundError):
            blobs.get(uri)
    assert blobs.get(kept) == b"kept"
    assert blobs.delete_runs(["old"]) == 0  # gone already


@pytest.mark.parametrize("run_id", ["..", "../kept", "a/b", "", "/"])
def test_deleting_a_run_whose_id_is_a_path_deletes_nothing(
    blobs: CountingBlobStore, run_id: str
) -> None:
    kept = blobs.put(key("kept"), b"kept")
    assert blobs.delete_runs([run_id]) == 0
    assert blobs.get(kept) == b"kept"
