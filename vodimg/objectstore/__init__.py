"""The object store: where the bytes of media files and task inputs live (DESIGN.md section 8).

One small interface, shaped so that S3 fits it unchanged: flat string keys, streaming reads,
put-once writes (a key, once written, is never replaced: derived outputs are keyed by their TaskId,
so a retried write duplicates nothing), delete, and listing by prefix. ``open_store(url)`` picks
the implementation: a local directory path (the embedded default) or ``s3://bucket/prefix``
(``vodimg.objectstore.s3``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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

    def presigned_url(self, key: str, expires: int, content_type: str | None = None) -> str | None:
        """A URL that serves ``key`` without credentials for ``expires`` seconds; None when the
        store cannot make one (a local directory)."""

    def check(self) -> None:
        """The start-up check: the store is reachable and writable (ObjectStoreError says why not)."""


@dataclass(frozen=True)
class S3Options:
    """Where and how to reach an S3 bucket; None: from the AWS variables (or boto3's defaults)."""
    endpoint: str | None = None     # e.g. http://127.0.0.1:9000; else AWS_ENDPOINT_URL(_S3), else AWS
    region: str | None = None       # else AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1
    addressing: str | None = None   # path | virtual; default: path with an endpoint, virtual on AWS


def check_key(key: str) -> None:
    """Keys are "/"-separated names, none of them empty, "." or ".."."""
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ObjectStoreError(f"invalid object key {key!r}")


def open_store(url: str | Path, s3_options: S3Options | None = None) -> ObjectStore:
    """The store a setting names: a directory path (or ``file://`` URL), or ``s3://bucket/prefix``
    (reached as ``s3_options`` say, by default from the AWS variables)."""
    text = str(url)
    if text.startswith("s3://"):
        from vodimg.objectstore.s3 import S3ObjectStore

        return S3ObjectStore.from_url(text, s3_options or S3Options())
    from vodimg.objectstore.local import LocalObjectStore

    return LocalObjectStore(Path(text.removeprefix("file://")))
