"""Packages outlive their jobs: copies taken when an env is recorded, put back into Ray's
GCS before an attempt needs them.

Ray stores a package as the value of its URI in the GCS internal KV (namespace none),
`packaging.upload_package_to_gcs`; its GCS deletes that key once no job, detached actor or
pin refers to the package any more. A worker's env is built from that key on a node that
has not unpacked it yet, so an attempt of a run whose job ended long ago would fail with
"Failed to download runtime_env file package". wfray copies each package into its blob
store when it records the env (`RayPackageKeeper`) and, before an executor launches an
attempt in an env, uploads again the packages Ray no longer has (`PackageGuard`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence

from wfray.adapters.blob import blob_store
from wfray.adapters.package_copies import PackageCopies, PackageCopyError
from wfray.domain.code_env import gcs_packages

log = logging.getLogger("wfray.packages")

# How long an env's packages count as present once checked: a check is one GCS call per
# package, not one per attempt. Ray deletes a package only after its job has ended and its
# pin expired, so the window in which one can vanish under a fresh check is this short.
CHECKED_FOR_S = 5.0


def _ray_has(uri: str) -> bool:
    from ray._private.runtime_env.packaging import package_exists

    return bool(package_exists(uri))


def _ray_bytes(uri: str) -> bytes | None:
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_initialized

    if not _internal_kv_initialized():  # not in a Ray process: nothing to copy from
        return None
    data = _internal_kv_get(uri)
    return None if data is None else bytes(data)


def _upload(uri: str, data: bytes) -> None:
    from ray._private.runtime_env.packaging import upload_package_to_gcs

    upload_package_to_gcs(uri, data)


class RayPackageKeeper:
    """The PackageKeeper port: copies what Ray holds of a package into the blob store."""

    def __init__(self, blob_root: str) -> None:
        self.copies = PackageCopies(blob_store(blob_root))

    def keep(self, uris: Sequence[str]) -> None:
        for uri in uris:
            try:
                if self.copies.has(uri):
                    continue
                data = _ray_bytes(uri)
                if data is None:  # the attempts will say so, with Ray's own error or ours
                    log.warning("package %s: Ray does not have it, no copy kept", uri)
                    continue
                self.copies.keep(uri, data)
            except (OSError, ValueError) as exc:
                # the env is recorded all the same: its runs work as long as Ray has it
                log.error("package %s: no copy kept: %s", uri, exc)
                continue
            log.info("package %s: copy kept (%d bytes)", uri, len(data))


class PackageUnavailable(Exception):
    """Ray no longer has a package an env names, and it could not be put back."""


class PackageGuard:
    """An executor's check, before it launches attempts in an env, that Ray has the env's
    packages; puts back from wfray's copies those it lost. One check per env and
    CHECKED_FOR_S, shared by the attempts that arrive meanwhile."""

    def __init__(self, blob_root: str | None) -> None:
        self.copies = None if blob_root is None else PackageCopies(blob_store(blob_root))
        self.checked: dict[str, float] = {}  # env JSON -> when its packages were there

    async def ensure(self, env_json: str) -> str | None:
        """None when Ray has every package of the env (again); else why it has not."""
        checked_at = self.checked.get(env_json)
        if checked_at is not None and time.monotonic() - checked_at < CHECKED_FOR_S:
            return None
        try:
            await asyncio.to_thread(self._ensure, gcs_packages(json.loads(env_json)))
        except PackageUnavailable as exc:
            self.checked.pop(env_json, None)
            return str(exc)
        self.checked[env_json] = time.monotonic()
        return None

    def forget(self, env_json: str) -> None:
        """Check the env again before its next attempt (Ray failed to build it)."""
        self.checked.pop(env_json, None)

    def _ensure(self, uris: Sequence[str]) -> None:
        for uri in uris:
            if _ray_has(uri):
                continue
            if self.copies is None:
                raise PackageUnavailable(f"Ray no longer has package {uri}, and wfray keeps none")
            try:
                data = self.copies.read(uri)
                _upload(uri, data)
            except (PackageCopyError, ValueError, RuntimeError) as exc:
                raise PackageUnavailable(
                    f"Ray no longer has package {uri} (deleted after the job that uploaded "
                    f"it ended) and it could not be put back: {exc}"
                ) from exc
            log.warning("package %s: Ray had lost it; uploaded again from wfray's copy", uri)
