"""Blob stores for large results, on any pyarrow filesystem (local folder, S3, GCS, ...).

Keys are relative paths built from checked ids (`wfray.domain.ids.blob_key`); the store
checks them once more, so no key can reach outside its root.

A list result is written as its JSON text plus an offsets file beside it (`<blob>.offsets`:
N+1 little-endian uint64, the byte offset where each item starts and the blob's length), so
a mapped item reads 16 bytes of offsets and its own bytes, not the whole list: a fan-out over
N items reads the list O(N) bytes in total, not O(N^2). The JSON blob stays whole for the
readers that want all of it (a fan-in, the run's result).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence

from pyarrow import fs

from wfray.config import mask_url_password
from wfray.domain.errors import BlobKeyError, BlobRootError, WfrayError
from wfray.domain.ids import check_run_id

log = logging.getLogger("wfray.blob")

OFFSETS = ".offsets"


def check_key(key: str) -> str:
    """`key` if it is a plain relative path (no `.`/`..`, empty or absolute parts)."""
    parts = key.split("/")
    if not key or "\\" in key or "\0" in key or any(p in ("", ".", "..") for p in parts):
        raise BlobKeyError(f"blob key {key!r} is not a plain relative path under the blob root")
    return key


def run_folders(run_ids: Iterable[str]) -> Iterator[str]:
    """The key of each run's blob folder. An id unfit for a path (stored before ids were
    checked) is never a path to follow: it is passed over, with a warning."""
    for run_id in run_ids:
        try:
            folder = check_key(check_run_id(run_id))
        except WfrayError:
            log.warning("run %r: id unfit for a path, its blobs (if any) are left", run_id)
            continue
        yield folder


def item_of_whole(whole: bytes, index: int, uri: str) -> bytes:
    """Item `index` of a list blob stored whole (written without offsets), as JSON."""
    items = json.loads(whole)
    if not 0 <= index < len(items):  # not items[-1]: as the offsets path refuses it
        raise IndexError(f"item {index} of a list of {len(items)} items in {uri!r}")
    return json.dumps(items[index], separators=(",", ":")).encode()


def is_node_local(root: str) -> bool:
    """A folder (or file:// URI) lives on one node unless the operator says it is shared;
    any other URI (s3://, gs://, hdfs://, ...) names an object store all nodes reach."""
    return "://" not in root or root.startswith("file://")


def check_blob_root(root: str, shared: bool, alive_nodes: int) -> None:
    """Refuse a node-local blob root on a cluster of several nodes (BlobRootError): a blob
    written on one node would be missing on the others."""
    if alive_nodes > 1 and not shared and is_node_local(root):
        raise BlobRootError(
            f"the blob root {mask_url_password(root)!r} is a folder, but the Ray cluster has "
            f"{alive_nodes} nodes: results written on one node would be missing on the others. "
            "Set WFRAY_BLOB_ROOT to an object store URI (s3://bucket/wfray, gs://...), or, if "
            "the folder is a filesystem every node mounts at the same path (NFS, ...), set "
            "WFRAY_BLOB_ROOT_SHARED=true"
        )


class FsBlobStore:
    """Writes each blob once under `root`; a blob's URI is the filesystem URI of its file.

    `reads` and `bytes_read` count what this process read through it (blobs, items and
    offsets), so a test or a metric can check that reads grow with the work.
    """

    def __init__(self, root: str) -> None:
        self.root_uri = root if "://" in root else f"file://{root}"
        self.fs, self.root = fs.FileSystem.from_uri(self.root_uri)
        self._prefix = f"{self.root_uri.rstrip('/')}/"
        self.reads = 0
        self.bytes_read = 0

    def put(self, key: str, data: bytes) -> str:
        path = f"{self.root.rstrip('/')}/{check_key(key)}"
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        return f"{self._prefix}{key}"

    def put_list(self, key: str, items: Sequence[bytes]) -> str:
        """Write a list whose items are already JSON (`items`), readable whole or by index."""
        data = b"[" + b",".join(items) + b"]"
        # item i starts after "[" and the i items (each followed by one comma) before it
        # (the last offset, after the last item's comma-or-bracket, is the blob's length)
        offsets = array("Q", itertools.accumulate((len(i) + 1 for i in items), initial=1))
        if sys.byteorder == "big":
            offsets.byteswap()
        uri = self.put(key, data)
        self.put(key + OFFSETS, offsets.tobytes())
        return uri

    def get(self, uri: str) -> bytes:
        filesystem, path = self._locate(uri)
        with filesystem.open_input_stream(path) as stream:
            data = bytes(stream.read())
        self._count(len(data))
        return data

    def get_item(self, uri: str, index: int) -> bytes:
        """Item `index` of a list blob as JSON, reading its offsets and its own bytes only
        (a blob written without offsets, by an older wfray, is read whole)."""
        filesystem, path = self._locate(uri)
        try:
            with filesystem.open_input_file(path + OFFSETS) as table:
                count = table.size() // 8 - 1
                if not 0 <= index < count:
                    raise IndexError(f"item {index} of a list of {count} items in {uri!r}")
                start, end = struct.unpack("<QQ", table.read_at(16, 8 * index))
        except FileNotFoundError:
            return item_of_whole(self.get(uri), index, uri)
        with filesystem.open_input_file(path) as blob:
            item = bytes(blob.read_at(end - 1 - start, start))
        self._count(16 + len(item), reads=2)
        return item

    def _locate(self, uri: str) -> tuple[fs.FileSystem, str]:
        if uri.startswith(self._prefix):  # ours: no new filesystem (an S3 client) per read
            return self.fs, f"{self.root.rstrip('/')}/{check_key(uri[len(self._prefix) :])}"
        filesystem, path = fs.FileSystem.from_uri(uri)
        return filesystem, str(path)

    def _count(self, nbytes: int, reads: int = 1) -> None:
        self.reads += reads
        self.bytes_read += nbytes

    def exists(self, key: str) -> bool:
        return bool(self.fs.get_file_info(self._path(key)).type == fs.FileType.File)

    def delete(self, key: str) -> bool:
        """Delete one blob; False if there was none."""
        path = self._path(key)
        if self.fs.get_file_info(path).type == fs.FileType.NotFound:
            return False
        self.fs.delete_file(path)
        return True

    def keys(self, folder: str) -> list[str]:
        """The keys of the blobs directly in `folder` (none if it does not exist)."""
        selector = fs.FileSelector(self._path(folder), allow_not_found=True, recursive=False)
        root = self.root.rstrip("/") + "/"
        return sorted(
            info.path[len(root) :]
            for info in self.fs.get_file_info(selector)
            if info.type == fs.FileType.File and info.path.startswith(root)
        )

    def _path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{check_key(key)}"

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete the blob folders of these runs (the blobs of all their attempts); returns
        how many runs had one."""
        deleted = 0
        for folder in run_folders(run_ids):
            path = f"{self.root.rstrip('/')}/{folder}"
            if self.fs.get_file_info(path).type == fs.FileType.NotFound:
                continue
            self.fs.delete_dir(path)
            deleted += 1
        return deleted


@functools.cache
def blob_store(root: str) -> FsBlobStore:
    return FsBlobStore(root)
