"""`wfray backup` and `wfray restore`: the store and the blob root, with a manifest.

A backup folder holds the store's copy (sqlalchemy/backup.py), the blob root's files under
`blobs/`, and `manifest.json`: wfray's version, the schema revision, when, where from, and
every file's size and SHA-256. The manifest is written last (atomically), so a backup that
stopped half-way has none and is refused as incomplete.

Order makes the copy consistent under load: the store is copied first, then the blobs. A
blob is written (once, under a key of its own attempt) before the commit that refers to it,
so every blob the store's copy refers to exists when the blobs are copied; blobs written
after the snapshot come along unreferenced, which is harmless.

A restore checks the whole backup before it changes anything: the manifest is there and
parses, every file is inside the folder with the size and checksum it lists, this wfray knows
the schema revision, and the target store (and blob root) are empty unless forced. It then
loads the store, copies the blobs into the target's blob root and points the results'
references there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pyarrow import fs

from wfray.adapters.sqlalchemy import backup as store_copy
from wfray.adapters.sqlalchemy import migrate
from wfray.config import Settings, mask_url_password
from wfray.domain.errors import BackupError

MANIFEST = "manifest.json"
BLOBS = "blobs"
FORMAT = 1
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BackupFile:
    path: str  # relative to the backup folder, with `/`
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    wfray_version: str
    created_at: str
    database: str  # sqlite | postgresql
    database_url: str  # password masked: where it came from, for people
    schema_revisions: list[str]
    blob_root: str  # the URI the store's result references start with
    store_file: str
    files: list[BackupFile] = field(default_factory=list)
    format: int = FORMAT

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def take_backup(settings: Settings, folder: Path) -> Manifest:
    """Copy the store, then the blobs, into `folder` (new or empty), then write the manifest.
    BackupError before anything is copied when the folder cannot be written."""
    folder = _writable_empty_folder(folder)
    try:
        return _fill(settings, folder)
    except BaseException:
        _empty(folder)  # it was empty before: a failed backup leaves nothing to mistake for one
        raise


def _fill(settings: Settings, folder: Path) -> Manifest:
    url = settings.database_url
    revisions = store_copy.revisions(url)
    store_file = store_copy.dump(url, folder, settings.pg_bin_dir)
    files = [_describe(folder, store_file)]
    blob_fs, blob_base = _filesystem(settings.blob_root)
    for relative in _files_under(blob_fs, blob_base):
        with blob_fs.open_input_stream(f"{blob_base}/{relative}") as source:
            target = folder / BLOBS / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                files.append(_copy(source, out, f"{BLOBS}/{relative}"))
    manifest = Manifest(
        wfray_version=_version(),
        created_at=datetime.now(UTC).isoformat(),
        database=store_copy.database_kind(url),
        database_url=mask_url_password(url),
        schema_revisions=revisions,
        blob_root=_root_uri(settings.blob_root),
        store_file=store_file,
        files=files,
    )
    temporary = folder / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
    os.replace(temporary, folder / MANIFEST)
    return manifest


def restore_backup(settings: Settings, folder: Path, force: bool = False) -> Manifest:
    """Bring the backup in `folder` back into the store and blob root of `settings`."""
    manifest = read_manifest(folder)
    verify(folder, manifest)
    url = settings.database_url
    kind = store_copy.database_kind(url)
    if manifest.database != kind:
        raise BackupError(
            f"the backup in {folder} is of a {manifest.database} store; this wfray's store "
            f"is {kind} ({mask_url_password(url)}): restore it into a {manifest.database} store"
        )
    unknown = [rev for rev in manifest.schema_revisions if not migrate.is_known(rev)]
    if unknown:
        raise BackupError(
            f"the backup's schema revision {', '.join(unknown)} is newer than this wfray "
            f"({_version()}) knows: restore it with wfray {manifest.wfray_version} or later"
        )
    blob_fs, blob_base = _filesystem(settings.blob_root)
    if not force:
        _refuse_if_in_use(url, blob_fs, blob_base, settings.blob_root)
    store_copy.load(url, folder / manifest.store_file, settings.pg_bin_dir)
    for item in manifest.files:
        if not item.path.startswith(f"{BLOBS}/"):
            continue
        target = f"{blob_base}/{item.path[len(BLOBS) + 1 :]}"
        blob_fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with (folder / item.path).open("rb") as source, blob_fs.open_output_stream(target) as out:
            _copy(source, out, item.path)
    store_copy.move_blob_refs(url, _prefix(manifest.blob_root), _prefix(settings.blob_root))
    return manifest


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        why = "no such folder" if not folder.is_dir() else f"it has no {MANIFEST}"
        raise BackupError(
            f"{folder} is not a complete wfray backup ({why}; a backup that stopped half-way "
            "has none)"
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {path}: {exc}") from None
    try:
        files = [BackupFile(**item) for item in raw.pop("files")]
        manifest = Manifest(**raw, files=files)
    except (AttributeError, KeyError, TypeError) as exc:
        raise BackupError(f"{path} is not a wfray backup manifest: {exc}") from None
    if manifest.format != FORMAT:
        raise BackupError(f"{path} has format {manifest.format!r}; this wfray reads {FORMAT}")
    return manifest


def verify(folder: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is inside `folder`, with its size and checksum."""
    listed = {item.path for item in manifest.files}
    if manifest.store_file not in listed:
        raise BackupError(f"the manifest in {folder} does not list the store's copy")
    for item in manifest.files:
        path = _inside(folder, item.path)
        try:
            size = path.stat().st_size
        except OSError:
            raise BackupError(
                f"the backup in {folder} is incomplete: {item.path} is missing"
            ) from None
        with path.open("rb") as source:
            digest = _copy(source, None, item.path)
        if size != item.size or digest.sha256 != item.sha256:
            raise BackupError(
                f"the backup in {folder} is corrupt: {item.path} has {size} bytes and SHA-256 "
                f"{digest.sha256[:16]}..., the manifest says {item.size} bytes and "
                f"{str(item.sha256)[:16]}..."
            )


# -- helpers -------------------------------------------------------------------------------


def _writable_empty_folder(folder: Path) -> Path:
    folder = folder.expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise BackupError(f"{folder} is not empty: back up into a new or empty folder")
        probe = folder / ".wfray-write-probe"
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        raise BackupError(f"cannot write the backup into {folder}: {exc.strerror or exc}") from None
    return folder


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _refuse_if_in_use(url: str, blob_fs: fs.FileSystem, blob_base: str, blob_root: str) -> None:
    held = store_copy.contents(url)
    if held:
        raise BackupError(
            f"the store {mask_url_password(url)} is not empty (rows in {', '.join(held)}): "
            "restore refuses to replace it; restore into a new store, or pass --force"
        )
    if next(_files_under(blob_fs, blob_base), None) is not None:
        raise BackupError(
            f"the blob root {mask_url_password(blob_root)} is not empty: restore refuses to "
            "mix blobs; use an empty one, or pass --force"
        )


def _inside(folder: Path, relative: str) -> Path:
    """`folder / relative`, refused unless `relative` is a plain path inside the folder."""
    parts = PurePosixPath(relative).parts if isinstance(relative, str) else ()
    if (
        not parts
        or relative.startswith("/")
        or "\0" in relative
        or any(part in ("", ".", "..") or "\\" in part for part in parts)
    ):
        raise BackupError(f"the manifest in {folder} lists a path outside it: {relative!r}")
    return folder.joinpath(*parts)


def _copy(source: Any, out: BinaryIO | Any, name: str) -> BackupFile:
    """Stream `source` to `out` (None: only read it), counting and hashing it."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if out is not None:
            out.write(chunk)
    return BackupFile(path=name, size=size, sha256=digest.hexdigest())


def _describe(folder: Path, name: str) -> BackupFile:
    with (folder / name).open("rb") as source:
        return _copy(source, None, name)


def _root_uri(root: str) -> str:
    return root if "://" in root else f"file://{root}"


def _prefix(root: str) -> str:
    return f"{_root_uri(root).rstrip('/')}/"


def _filesystem(root: str) -> tuple[fs.FileSystem, str]:
    try:
        filesystem, base = fs.FileSystem.from_uri(_root_uri(root))
    except Exception as exc:
        raise BackupError(f"cannot open the blob root {mask_url_password(root)}: {exc}") from exc
    return filesystem, str(base).rstrip("/")


def _files_under(filesystem: fs.FileSystem, base: str) -> Iterator[str]:
    """The files below `base`, as paths relative to it (none if it does not exist)."""
    if filesystem.get_file_info(base).type == fs.FileType.NotFound:
        return
    for info in filesystem.get_file_info(fs.FileSelector(base, recursive=True)):
        if info.type == fs.FileType.File:
            yield info.path[len(base) + 1 :]


def _version() -> str:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version("wfray")
    return "unknown"
