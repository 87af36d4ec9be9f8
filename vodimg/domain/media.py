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

from vodimg.domain.clock import iso_utc, utc_now
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
        """The application's media file ``file_id``, or None (also for another application's, and
        for one past its ExpireTime that the sweeper has not removed yet)."""
        found = self.get_many(sub_app_id, [file_id])
        return found[0] if found else None

    def get_many(self, sub_app_id: int, file_ids: list[str]) -> list[MediaFile]:
        """The application's live media files among ``file_ids`` (in no particular order)."""
        wanted = [file_id for file_id in file_ids if is_file_id(file_id)]
        if not wanted:
            return []
        with self._db.read() as conn:
            rows = conn.execute(sa.select(*_COLUMNS).where(
                media.c.file_id.in_(wanted), media.c.sub_app_id == sub_app_id,
                sa.or_(media.c.expire_time.is_(None), media.c.expire_time > iso_utc(utc_now())))).all()
        return [MediaFile(**row._mapping) for row in rows]


def insert_media(conn: sa.Connection, file: MediaFile) -> None:
    """Insert ``file``'s row in the caller's transaction."""
    conn.execute(media.insert().values(**file.row()))


# -- uploads and pulls: what an image is, from its header ---------------------------------------------

# MediaType values ApplyUpload and PullUpload accept (image extensions the header probe can read).
IMAGE_TYPES = ("jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff")
# Pillow's format name -> (Container as MetaData shows it, Content-Type served).
HEADER_FORMATS = {
    "JPEG": ("jpeg", "image/jpeg"), "MPO": ("jpeg", "image/jpeg"), "PNG": ("png", "image/png"),
    "GIF": ("gif", "image/gif"), "BMP": ("bmp", "image/bmp"), "WEBP": ("webp", "image/webp"),
    "TIFF": ("tiff", "image/tiff"),
}
HEADER_BYTES = 512 * 1024  # enough for any header these formats have (JPEG APP segments included)
NEVER_EXPIRES = "9999-12-31T23:59:59Z"  # MediaBasicInfo.ExpireTime of a file without one


@dataclass(frozen=True)
class ImageHeader:
    container: str
    content_type: str
    width: int
    height: int


def probe_header(head: bytes) -> ImageHeader | None:
    """The image format and size from the first bytes of a file, or None when it is not an image
    of a known format. Pillow's ``Image.open`` parses the header only: no pixel is decoded."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # (the JPEG plugin itself answers MPO for a multi-picture JPEG)
            with Image.open(io.BytesIO(head), formats=[name for name in HEADER_FORMATS if name != "MPO"]) as image:
                container, content_type = HEADER_FORMATS[image.format]
                width, height = image.size
    except (OSError, ValueError, SyntaxError, KeyError, Image.DecompressionBombError):
        return None
    if width <= 0 or height <= 0:
        return None
    return ImageHeader(container, content_type, width, height)


def basic_info(file: MediaFile, public_base: str, region: str) -> dict:
    """MediaBasicInfo as DescribeMediaInfos, PullUploadTask and the upload event show it."""
    return {
        "Name": file.name, "Description": "", "CreateTime": file.create_time, "UpdateTime": file.update_time,
        "ExpireTime": file.expire_time or NEVER_EXPIRES, "ClassId": file.class_id, "ClassName": "",
        "ClassPath": "", "CoverUrl": "", "Type": file.type, "MediaUrl": file.url(public_base),
        "SourceInfo": {"SourceType": file.source_type, "SourceContext": file.source_context,
                       "LiveRecordInfo": None, "TrtcRecordInfo": None, "WebPageRecordInfo": None},
        "StorageRegion": region, "StoragePath": "", "TagSet": [], "Vid": "", "Category": CATEGORY_IMAGE,
        "Status": "Normal", "StorageClass": "STANDARD",
    }
