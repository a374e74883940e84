"""InMemoryBlobStore: the blob store port in a dict, for tests without a folder.

It behaves as FsBlobStore does through the port (tests/contract/test_blob_store_contract.py):
the same key checks, a list readable whole or one item at a time, FileNotFoundError for a
blob that is not there, IndexError for an item that is not, and the same read counters.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence

from wfray.adapters.blob import check_key, item_of_whole, run_folders


class InMemoryBlobStore:
    """Blobs by key in this process; a blob's URI is `memory://<store>/<key>`.

    `reads` and `bytes_read` count what was read through it, as FsBlobStore's do (an item
    of a list costs its offsets, 16 bytes, and its own bytes).
    """

    def __init__(self, name: str | None = None) -> None:
        self.root_uri = f"memory://{name or uuid.uuid4().hex}"
        self._prefix = f"{self.root_uri}/"
        self._blobs: dict[str, bytes] = {}
        # where each item of a list starts, and the list's length (FsBlobStore's offsets)
        self._offsets: dict[str, list[int]] = {}
        self._lock = threading.Lock()  # steps in threads write while others read
        self.reads = 0
        self.bytes_read = 0

    def put(self, key: str, data: bytes) -> str:
        check_key(key)
        with self._lock:
            self._blobs[key] = bytes(data)
            self._offsets.pop(key, None)  # a blob written over a list is no list any more
        return f"{self._prefix}{key}"

    def put_list(self, key: str, items: Sequence[bytes]) -> str:
        """Write a list whose items are already JSON (`items`), readable whole or by index."""
        check_key(key)
        offsets = [1]
        for item in items:
            offsets.append(offsets[-1] + len(item) + 1)
        data = b"[" + b",".join(items) + b"]"
        with self._lock:
            self._blobs[key] = data
            self._offsets[key] = offsets
        return f"{self._prefix}{key}"

    def get(self, uri: str) -> bytes:
        key = self._key(uri)
        with self._lock:
            data = self._blobs.get(key)
        if data is None:
            raise FileNotFoundError(f"no blob {uri!r}")
        self._count(len(data))
        return data

    def get_item(self, uri: str, index: int) -> bytes:
        """Item `index` of a list blob as JSON, reading only its own bytes (a blob written
        by `put` is read whole, as FsBlobStore reads one written without offsets)."""
        key = self._key(uri)
        with self._lock:
            data, offsets = self._blobs.get(key), self._offsets.get(key)
        if data is None:
            raise FileNotFoundError(f"no blob {uri!r}")
        if offsets is None:
            return item_of_whole(self.get(uri), index, uri)
        count = len(offsets) - 1
        if not 0 <= index < count:
            raise IndexError(f"item {index} of a list of {count} items in {uri!r}")
        item = data[offsets[index] : offsets[index + 1] - 1]
        self._count(16 + len(item), reads=2)
        return item

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete the blobs of these runs; returns how many runs had any."""
        deleted = 0
        for folder in run_folders(run_ids):
            with self._lock:
                keys = [key for key in self._blobs if key.startswith(f"{folder}/")]
                for key in keys:
                    del self._blobs[key]
                    self._offsets.pop(key, None)
            deleted += bool(keys)
        return deleted

    def _key(self, uri: str) -> str:
        if not uri.startswith(self._prefix):
            raise FileNotFoundError(f"no blob {uri!r} in the blob store {self.root_uri!r}")
        return check_key(uri[len(self._prefix) :])

    def _count(self, nbytes: int, reads: int = 1) -> None:
        with self._lock:
            self.reads += reads
            self.bytes_read += nbytes
