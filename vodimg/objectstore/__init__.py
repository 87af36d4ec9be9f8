"""The object store: where the bytes of media files and task inputs live (DESIGN.md section 8).

One small interface, shaped so that S3 fits it unchanged: flat string keys, streaming reads,
put-once writes (a key, once written, is never replaced: derived outputs are keyed by their TaskId,
so a retried write duplicates nothing), delete, and listing by prefix. ``open_store(url)`` picks
the implementation: a local directory path (the embedded default) or, later, ``s3://bucket/prefix``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 256 * 1024


class ObjectStoreError(Exception):
    """The store could not do what was asked (I/O failure, bad key); the message says why."""


class NoSuchObject(ObjectStoreError):
    """The key does not exist."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # Unix seconds


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes | Iterable[bytes]) -> bool:
        """Store ``data`` under ``key`` unless the key exists; True when this call created it.
        Readers never see a partly written object."""

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``start`` to ``end`` (exclusive; None: to the end) as chunks. NoSuchObject."""

    def read(self, key: str) -> bytes:
        """The whole object (for inputs bounded by the input limit). NoSuchObject."""

    def head(self, key: str) -> ObjectInfo | None:
        """Size and time of ``key``, or None when it does not exist."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it does not exist."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order."""


def open_store(url: str | Path) -> ObjectStore:
    """The store a setting names: a directory path (or ``file://`` URL)."""
    text = str(url)
    if text.startswith("s3://"):
        raise ObjectStoreError("s3:// storage is not available in this version; use a directory")
    from vodimg.objectstore.local import LocalObjectStore

    return LocalObjectStore(Path(text.removeprefix("file://")))


def read_all(chunks: Iterable[bytes] | BinaryIO) -> bytes:
    if hasattr(chunks, "read"):
        return chunks.read()
    return b"".join(chunks)
