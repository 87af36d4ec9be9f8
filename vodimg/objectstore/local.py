"""The object store in a local directory (the embedded default).

A key ``a/b/c.png`` is the file ``ROOT/a/b/c.png``. Writes go to a temporary file in the same
directory, are flushed to disk, then linked into place with ``os.link``, which fails when the
name exists: put-once is atomic even between processes, and a crash leaves at most a temporary
``.tmp-*`` file (never a half object under a real key), which ``list`` skips and
``remove_stale_temporaries`` cleans up.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from vodimg.objectstore import CHUNK_BYTES, NoSuchObject, ObjectInfo, ObjectStoreError, check_key

TEMP_PREFIX = ".tmp-"


class LocalObjectStore:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        check_key(key)
        parts = key.split("/")
        if any(part.startswith(TEMP_PREFIX) for part in parts):
            raise ObjectStoreError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes | Iterable[bytes]) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
            _fsync_directory(path.parent)
            return True
        finally:
            os.unlink(temp)

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            handle = open(self._path(key), "rb")
        except FileNotFoundError:
            raise NoSuchObject(key) from None
        return _chunks(handle, start, end)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NoSuchObject(key) from None

    def head(self, key: str) -> ObjectInfo | None:
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, stat.st_size, stat.st_mtime)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return _walk(self.root, "", prefix)

    def presigned_url(self, key: str, expires: int, content_type: str | None = None) -> None:
        return None  # served files stream from here

    def check(self) -> None:
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ObjectStoreError(f"object store directory {self.root} is not writable")

    def remove_stale_temporaries(self, older_than_seconds: float = 3600) -> int:
        """Delete temporary files a crashed writer left behind; returns how many."""
        cutoff, removed = time.time() - older_than_seconds, 0
        for directory, _subdirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(directory, name)
                if name.startswith(TEMP_PREFIX) and os.stat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
        return removed


def _walk(directory: Path, base: str, prefix: str) -> Iterator[ObjectInfo]:
    """Files under ``directory`` in key order: a subdirectory ``d`` sorts as its keys ``d/...`` do."""
    with os.scandir(directory) as scan:
        entries = sorted(((entry.name + "/" if entry.is_dir() else entry.name), entry) for entry in scan)
    for name, entry in entries:
        key = base + name
        if name.startswith(TEMP_PREFIX) or not (key.startswith(prefix) or prefix.startswith(key)):
            continue
        if name.endswith("/"):
            yield from _walk(Path(entry.path), key, prefix)
        elif key.startswith(prefix):
            stat = entry.stat()
            yield ObjectInfo(key, stat.st_size, stat.st_mtime)


def _chunks(handle, start: int, end: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
