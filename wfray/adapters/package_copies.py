"""wfray's own copies of the packages recorded runtime envs name, in its blob store.

Ray keeps a job's `working_dir` and `py_modules` packages in its GCS only while something
refers to them: some time after the job ends, they are deleted. A run, schedule or event
subscription recorded with that job's env still needs them, so wfray keeps a copy of each
package's bytes under `packages/<name>` with its SHA-256 beside it (`<name>.sha256`): a copy
that was damaged is refused, never handed to Ray. Retention removes the copies no run,
schedule or subscription refers to any more (analytics/retention.py).
"""

from __future__ import annotations

import hashlib

from wfray.adapters.blob import FsBlobStore
from wfray.config import mask_url_password
from wfray.domain.code_env import package_name

FOLDER = "packages"
DIGEST = ".sha256"


class PackageCopyError(Exception):
    """A package's copy is missing, or its bytes are not the ones kept."""


class PackageCopies:
    """Package bytes by `gcs://` URI, checked against the digest written with them."""

    def __init__(self, blobs: FsBlobStore) -> None:
        self.blobs = blobs

    @staticmethod
    def key(uri: str) -> str:
        return f"{FOLDER}/{package_name(uri)}"

    def has(self, uri: str) -> bool:
        key = self.key(uri)
        return self.blobs.exists(key + DIGEST) and self.blobs.exists(key)

    def keep(self, uri: str, data: bytes) -> None:
        """Store the bytes, then their digest: a copy without its digest is not one."""
        key = self.key(uri)
        self.blobs.put(key, data)
        self.blobs.put(key + DIGEST, hashlib.sha256(data).hexdigest().encode())

    def read(self, uri: str) -> bytes:
        """The kept bytes; PackageCopyError if there are none or they changed."""
        key = self.key(uri)
        location = f"{self.blobs.root_uri.rstrip('/')}/{key}"
        try:
            digest = self.blobs.get(f"{location}{DIGEST}").decode("ascii", "replace").strip()
            data = self.blobs.get(location)
        except (FileNotFoundError, OSError) as exc:
            raise PackageCopyError(f"wfray holds no copy of package {uri} ({exc})") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise PackageCopyError(
                f"wfray's copy of package {uri} at {mask_url_password(location)} is damaged "
                "(its SHA-256 is not the one recorded when it was kept): not uploaded"
            )
        return data

    def kept(self) -> list[str]:
        """The URIs of the packages kept (with a digest or not)."""
        names = {key.rsplit("/", 1)[-1].removesuffix(DIGEST) for key in self.blobs.keys(FOLDER)}
        return sorted(f"gcs://{name}" for name in names)

    def delete(self, uri: str) -> None:
        key = self.key(uri)
        self.blobs.delete(key + DIGEST)  # first: a half-deleted copy is no copy
        self.blobs.delete(key)
