"""Blob stores for large results, on any pyarrow filesystem (local folder, S3, GCS, ...).

Keys are relative paths built from checked ids (`wfray.domain.ids.blob_key`); the store
checks them once more, so no key can reach outside its root.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from pyarrow import fs

from wfray.config import mask_url_password
from wfray.domain.errors import BlobKeyError, BlobRootError, WfrayError
from wfray.domain.ids import check_run_id

log = logging.getLogger("wfray.blob")


def check_key(key: str) -> str:
    """`key` if it is a plain relative path (no `.`/`..`, empty or absolute parts)."""
    parts = key.split("/")
    if not key or "\\" in key or "\0" in key or any(p in ("", ".", "..") for p in parts):
        raise BlobKeyError(f"blob key {key!r} is not a plain relative path under the blob root")
    return key


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
    """Writes each blob once under `root`; a blob's URI is the filesystem URI of its file."""

    def __init__(self, root: str) -> None:
        self.root_uri = root if "://" in root else f"file://{root}"
        self.fs, self.root = fs.FileSystem.from_uri(self.root_uri)

    def put(self, key: str, data: bytes) -> str:
        path = f"{self.root.rstrip('/')}/{check_key(key)}"
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        return f"{self.root_uri.rstrip('/')}/{key}"

    def get(self, uri: str) -> bytes:
        filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read())

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete the blob folders of these runs (the blobs of all their attempts); returns
        how many runs had one."""
        deleted = 0
        for run_id in run_ids:
            try:
                path = f"{self.root.rstrip('/')}/{check_key(check_run_id(run_id))}"
            except WfrayError:  # stored before ids were checked: never a path to follow
                log.warning("run %r: id unfit for a path, its blobs (if any) are left", run_id)
                continue
            if self.fs.get_file_info(path).type == fs.FileType.NotFound:
                continue
            self.fs.delete_dir(path)
            deleted += 1
        return deleted


@functools.cache
def blob_store(root: str) -> FsBlobStore:
    return FsBlobStore(root)
