"""Media files: the rows of the media library and the URLs that serve their bytes (DESIGN.md 4).

A media file belongs to one application. Its FileId is 19 digits: random for uploads, derived from
the TaskId for a task's output (so a retried task makes the same FileId, and the primary key makes
a second row impossible). Its bytes live in the object store under ``storage_key``; the service
serves them at ``{public base}/files/{SubAppId}/{FileId}/{name}.{ext}``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa

from vodimg.storage.db import Database
from vodimg.storage.schema import media

FILE_ID_LOW, FILE_ID_SPAN = 10**18, 9 * 10**18  # 19 digits, no leading zero
CATEGORY_IMAGE = "Image"
# Engine output formats -> (extension, Container as MetaData shows it, Content-Type).
FORMATS = {
    "JPEG": ("jpg", "jpeg", "image/jpeg"),
    "PNG": ("png", "png", "image/png"),
    "BMP": ("bmp", "bmp", "image/bmp"),
    "WebP": ("webp", "webp", "image/webp"),
}


def random_file_id() -> str:
    return str(FILE_ID_LOW + secrets.randbelow(FILE_ID_SPAN))


def file_id_for(task_id: str) -> str:
    """The FileId of a task's output: fixed by the TaskId, unguessable as the TaskId is."""
    digest = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:16], "big")
    return str(FILE_ID_LOW + digest % FILE_ID_SPAN)


def is_file_id(text: str) -> bool:
    return len(text) == 19 and text.isdigit() and text[0] != "0"


def media_url(public_base: str, sub_app_id: int, file_id: str, name: str, extension: str) -> str:
    return f"{public_base.rstrip('/')}/files/{sub_app_id}/{file_id}/{quote(name or file_id, safe='')}.{extension}"


@dataclass(frozen=True)
class MediaFile:
    file_id: str
    sub_app_id: int
    name: str
    type: str
    class_id: int
    source_type: str
    source_context: str
    size: int
    container: str
    width: int
    height: int
    md5: str
    content_type: str
    storage_key: str
    create_time: str
    update_time: str
    expire_time: str | None

    def row(self) -> dict:
        return dict(self.__dict__)

    def url(self, public_base: str) -> str:
        return media_url(public_base, self.sub_app_id, self.file_id, self.name, self.type)

    def meta_data(self) -> dict:
        """MediaMetaData as the API shows it for an image."""
        return {"Size": self.size, "Container": self.container, "Width": self.width,
                "Height": self.height, "Md5": self.md5, "Bitrate": 0, "Duration": 0.0, "Rotate": 0,
                "VideoStreamSet": [], "AudioStreamSet": [], "VideoDuration": 0.0, "AudioDuration": 0.0}


_COLUMNS = tuple(media.c)


class MediaService:
    def __init__(self, db: Database):
        self._db = db

    def get(self, sub_app_id: int, file_id: str) -> MediaFile | None:
        """The application's media file ``file_id``, or None (also for another application's)."""
        if not is_file_id(file_id):
            return None
        with self._db.read() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(
                media.c.file_id == file_id, media.c.sub_app_id == sub_app_id)).first()
        return MediaFile(**row._mapping) if row is not None else None


def insert_media(conn: sa.Connection, file: MediaFile) -> None:
    """Insert ``file``'s row in the caller's transaction."""
    conn.execute(media.insert().values(**file.row()))
