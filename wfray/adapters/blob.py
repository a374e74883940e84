"""Blob stores for large results, on any pyarrow filesystem (local folder, S3, GCS, ...)."""

from __future__ import annotations

import functools

from pyarrow import fs


class FsBlobStore:
    """Writes each blob once under `root`; a blob's URI is the filesystem URI of its file."""

    def __init__(self, root: str) -> None:
        self.root_uri = root if "://" in root else f"file://{root}"
        self.fs, self.root = fs.FileSystem.from_uri(self.root_uri)

    def put(self, key: str, data: bytes) -> str:
        path = f"{self.root.rstrip('/')}/{key}"
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        return f"{self.root_uri.rstrip('/')}/{key}"

    def get(self, uri: str) -> bytes:
        filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read())


@functools.cache
def blob_store(root: str) -> FsBlobStore:
    return FsBlobStore(root)
