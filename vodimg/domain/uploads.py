"""The media library's upload side (DESIGN.md 4): ApplyUpload and CommitUpload, the objects the COS
endpoint stores for an upload session, DescribeMediaInfos and DeleteMedia.

An upload session (ApplyUpload) owns one COS object key (its MediaStoragePath) and a temporary
credential that may write that key only, for ``session_seconds``. Every PUT Object and every
completed multipart upload streams to a fresh object-store key under ``uploads/<session>/`` and
then points the session at it (the previous object is deleted), so a reader never sees bytes being
replaced. Multipart parts are objects under ``uploads/<session>/parts/<UploadId>/``;
CompleteMultipartUpload streams them, in order, into the final object and deletes them.
CommitUpload reads the object's header only (no pixel is decoded in the API process) and, in one
transaction conditional on the session not being committed yet, creates the media row and the
NewFileUpload event. The sweeper removes what expired sessions left behind.

COS-side failures raise ``CosError`` with a COS error code; the wire layer (vodimg/wire/cos.py)
turns it into COS XML with its HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import sqlalchemy as sa

from vodimg.domain.clock import Clock, iso_utc, parse_iso, utc_now
from vodimg.domain.media import (
    HEADER_BYTES, IMAGE_TYPES, MediaFile, MediaService, basic_info, insert_media, probe_header,
    random_file_id,
)
from vodimg.errors import ApiError
from vodimg.events import insert_event, switch_on
from vodimg.objectstore import ObjectStore
from vodimg.queue import now_ms
from vodimg.storage.db import Database
from vodimg.storage.schema import media, multipart_parts, multipart_uploads, upload_sessions

SOURCE_TYPE_UPLOAD = "Upload"
MAX_FILE_IDS = 20
MIN_PART_BYTES = 1024 * 1024  # COS: every part but the last is at least 1 MB
MAX_PART_NUMBER = 10000
NEW_FILE_UPLOAD, FILE_DELETED = "NewFileUpload", "FileDeleted"
_ALPHANUMERIC = string.ascii_letters + string.digits
_SAFE_STEM = re.compile(r"[^A-Za-z0-9_-]+")


class CosError(Exception):
    """A COS XML error: ``code`` is COS's (AccessDenied, NoSuchUpload, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class UploadSettings:
    public_base: str
    region: str
    max_input_bytes: int
    session_seconds: float = 3600.0  # the TempCertificate and the VodSessionKey


@dataclass(frozen=True)
class UploadSession:
    session_id: str
    sub_app_id: int
    temp_secret_key: str
    temp_token: str
    storage_path: str  # the one COS key this session may write (no leading /)
    object_key: str | None
    file_id: str | None
    expires_ms: int

    @property
    def prefix(self) -> str:
        """Where this session's objects live in the object store."""
        return f"uploads/{self.session_id}/"


_SESSION_COLUMNS = (upload_sessions.c.session_id, upload_sessions.c.sub_app_id, upload_sessions.c.temp_secret_key,
                    upload_sessions.c.temp_token, upload_sessions.c.storage_path, upload_sessions.c.object_key,
                    upload_sessions.c.file_id, upload_sessions.c.expires_ms)


class MediaLibrary:
    """The actions: ApplyUpload, CommitUpload, DescribeMediaInfos, DeleteMedia."""

    def __init__(self, db: Database, store: ObjectStore, media_service: MediaService, settings: UploadSettings,
                 *, clock: Clock = utc_now):
        self._db = db
        self._store = store
        self._media = media_service
        self.settings = settings
        self._clock = clock

    # -- ApplyUpload --------------------------------------------------------------------------------

    def apply(self, sub_app_id: int, params: dict) -> dict:
        media_type = checked_media_type(params["MediaType"], "MediaType")
        expire_time = checked_expire_time(params.get("ExpireTime"), self._clock())
        name = params.get("MediaName") or ""
        class_id = params.get("ClassId", 0)
        if class_id < 0:
            raise ApiError("InvalidParameterValue.ClassId", f"ClassId must be 0 or more; got {class_id}.")
        session_id = secrets.token_hex(16)
        stem = _SAFE_STEM.sub("", name)[:64] or "file"
        storage_path = f"upload/{session_id}/{stem}.{media_type}"
        secret = secrets.token_hex(16)
        temp_id = "AKID" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(32))
        temp_key = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(32))
        token = secrets.token_hex(32)
        created = now_ms()
        expires = created + int(self.settings.session_seconds * 1000)
        with self._db.write() as conn:
            conn.execute(upload_sessions.insert().values(
                session_id=session_id, sub_app_id=sub_app_id, session_secret=secret, temp_secret_id=temp_id,
                temp_secret_key=temp_key, temp_token=token, storage_path=storage_path, media_type=media_type,
                media_name=name, class_id=class_id, source_context=params.get("SourceContext") or "",
                session_context=params.get("SessionContext") or "", media_expire_time=expire_time,
                object_key=None, object_size=None, object_md5=None, file_id=None, created_ms=created,
                expires_ms=expires))
        return {
            "StorageBucket": f"vodimg-{sub_app_id}", "StorageRegion": self.settings.region,
            "VodSessionKey": f"{session_id}.{secret}", "MediaStoragePath": "/" + storage_path,
            "CoverStoragePath": "",
            "TempCertificate": {"SecretId": temp_id, "SecretKey": temp_key, "Token": token,
                                "ExpiredTime": expires // 1000},
        }

    # -- CommitUpload -------------------------------------------------------------------------------

    def commit(self, sub_app_id: int, vod_session_key: str) -> dict:
        row = self._session_for_commit(sub_app_id, vod_session_key)
        if row["object_key"] is None or self._store.head(row["object_key"]) is None:
            raise ApiError("FailedOperation",
                           f"Nothing was uploaded to MediaStoragePath /{row['storage_path']} yet: upload the file "
                           f"(COS PUT Object or multipart upload) before CommitUpload.")
        if row["object_size"] > self.settings.max_input_bytes:
            raise ApiError("FailedOperation", f"The uploaded file is {row['object_size']} bytes, over the input "
                                              f"limit of {self.settings.max_input_bytes} bytes.")
        header = probe_header(b"".join(self._store.open(row["object_key"], 0, HEADER_BYTES)))
        if header is None:
            raise ApiError("FailedOperation.MediaType",
                           f"The uploaded file is not an image this service reads ({', '.join(IMAGE_TYPES)}): "
                           f"its header is not one of these formats.")
        now = iso_utc(self._clock())
        file = MediaFile(
            file_id=random_file_id(), sub_app_id=sub_app_id, name=row["media_name"] or row["session_id"],
            type=row["media_type"], class_id=row["class_id"], source_type=SOURCE_TYPE_UPLOAD,
            source_context=row["source_context"], size=row["object_size"], container=header.container,
            width=header.width, height=header.height, md5=row["object_md5"], content_type=header.content_type,
            storage_key=row["object_key"], create_time=now, update_time=now, expire_time=row["media_expire_time"])
        with self._db.write() as conn:
            claimed = conn.execute(upload_sessions.update().where(
                upload_sessions.c.session_id == row["session_id"], upload_sessions.c.file_id.is_(None),
                upload_sessions.c.object_key == row["object_key"]).values(file_id=file.file_id)).rowcount
            if claimed != 1:  # committed meanwhile, or a new PUT replaced the object just read
                raise _session_key_error("was already committed or changed meanwhile; apply for a new upload")
            insert_media(conn, file)
            if switch_on(conn, sub_app_id, "UploadMediaCompleteEventSwitch"):
                insert_event(conn, sub_app_id, NEW_FILE_UPLOAD, self.upload_event(file))
        return {"FileId": file.file_id, "MediaUrl": file.url(self.settings.public_base), "CoverUrl": ""}

    def _session_for_commit(self, sub_app_id: int, vod_session_key: str):
        session_id, _, secret = vod_session_key.partition(".")
        if not re.fullmatch(r"[0-9a-f]{32}", session_id) or not secret:
            raise _session_key_error("is not one ApplyUpload gave")
        with self._db.read() as conn:
            row = conn.execute(sa.select(upload_sessions).where(
                upload_sessions.c.session_id == session_id)).first()
        if row is None or not hmac.compare_digest(row.session_secret, secret) or row.sub_app_id != sub_app_id:
            raise _session_key_error("is not one ApplyUpload gave to this application")
        if row.file_id is not None:
            raise _session_key_error(f"was already committed (FileId {row.file_id})")
        if row.expires_ms < now_ms():
            raise _session_key_error("has expired; apply for a new upload")
        return row._mapping

    def upload_event(self, file: MediaFile) -> dict:
        return {"EventType": NEW_FILE_UPLOAD, "FileUploadEvent": {
            "FileId": file.file_id, "MediaBasicInfo": self.basic_info(file), "ProcedureTaskId": "",
            "ReviewAudioVideoTaskId": "", "MetaData": file.meta_data()}}

    def basic_info(self, file: MediaFile) -> dict:
        return basic_info(file, self.settings.public_base, self.settings.region)

    # -- DescribeMediaInfos, DeleteMedia ------------------------------------------------------------

    def describe(self, sub_app_id: int, file_ids: list[str], filters: list[str] | None) -> dict:
        if not file_ids:
            raise ApiError("InvalidParameterValue.FileIdsEmpty", "FileIds must name at least one FileId.")
        if len(file_ids) > MAX_FILE_IDS:
            raise ApiError("InvalidParameterValue.FileIdsTooMany",
                           f"FileIds may name at most {MAX_FILE_IDS} FileIds; got {len(file_ids)}.")
        found = {file.file_id: file for file in self._media.get_many(sub_app_id, file_ids)}
        wanted = set(filters) if filters else {"basicInfo", "metaData"}
        infos, missing = [], []
        for file_id in dict.fromkeys(file_ids):  # each once, in the order asked
            file = found.get(file_id)
            if file is None:
                missing.append(file_id)
                continue
            info = {"FileId": file_id, "BasicInfo": None, "MetaData": None}
            if "basicInfo" in wanted:
                info["BasicInfo"] = self.basic_info(file)
            if "metaData" in wanted:
                info["MetaData"] = file.meta_data()
            infos.append(info)
        return {"MediaInfoSet": infos, "NotExistFileIdSet": missing}

    def delete(self, sub_app_id: int, file_id: str, delete_parts: list[dict] | None) -> None:
        """Remove the media row (and raise FileDeleted when switched on), then its bytes.
        DeleteParts naming only parts an image does not have (transcodes, ...) delete nothing."""
        file = self._media.get(sub_app_id, file_id)
        if file is None:
            raise ApiError("ResourceNotFound.FileNotExist", f"FileId {file_id!r} is not a media file of this application.")
        if delete_parts and not any(part.get("Type") == "OriginalFiles" for part in delete_parts):
            return
        with self._db.write() as conn:
            gone = conn.execute(media.delete().where(
                media.c.file_id == file_id, media.c.sub_app_id == sub_app_id)).rowcount
            if gone != 1:
                raise ApiError("ResourceNotFound.FileNotExist", f"FileId {file_id!r} was deleted meanwhile.")
            if switch_on(conn, sub_app_id, "DeleteMediaCompleteEventSwitch"):
                insert_event(conn, sub_app_id, FILE_DELETED, {"EventType": FILE_DELETED, "FileDeleteEvent": {
                    "FileIdSet": [file_id], "FileDeleteResultInfo": [{"FileId": file_id, "DeleteParts": []}]}})
        self._store.delete(file.storage_key)


# -- the COS endpoint's side ----------------------------------------------------------------------

@dataclass(frozen=True)
class StoredObject:
    size: int
    md5: str  # hex


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str  # hex MD5
    modified_ms: int


class CosUploads:
    """What the COS endpoint does with an authenticated session (vodimg/wire/cos.py checks the
    signature and that the request's key is ``session.storage_path``)."""

    def __init__(self, db: Database, store: ObjectStore, max_input_bytes: int):
        self._db = db
        self._store = store
        self.max_input_bytes = max_input_bytes

    def session_for(self, temp_secret_id: str) -> UploadSession | None:
        with self._db.read() as conn:
            row = conn.execute(sa.select(*_SESSION_COLUMNS).where(
                upload_sessions.c.temp_secret_id == temp_secret_id)).first()
        return UploadSession(**row._mapping) if row is not None else None

    def put_object(self, session: UploadSession, chunks: Iterable[bytes], content_md5: str | None) -> StoredObject:
        """PUT Object: stream ``chunks`` to a fresh key, then make it the session's object."""
        key = f"{session.prefix}objects/{secrets.token_hex(8)}"
        stored = self._stream(key, chunks, self.max_input_bytes, _expected_md5(content_md5))
        self._set_object(session, key, stored)
        return stored

    def head_object(self, session: UploadSession) -> StoredObject:
        with self._db.read() as conn:
            row = conn.execute(sa.select(upload_sessions.c.object_key, upload_sessions.c.object_size,
                                         upload_sessions.c.object_md5).where(
                upload_sessions.c.session_id == session.session_id)).first()
        if row is None or row.object_key is None:
            raise CosError("NoSuchKey", "The specified key does not exist.")
        return StoredObject(row.object_size, row.object_md5)

    def _set_object(self, session: UploadSession, key: str, stored: StoredObject) -> None:
        with self._db.write() as conn:
            previous = conn.execute(sa.select(upload_sessions.c.object_key).where(
                upload_sessions.c.session_id == session.session_id, upload_sessions.c.file_id.is_(None))).first()
            if previous is not None:
                conn.execute(upload_sessions.update().where(
                    upload_sessions.c.session_id == session.session_id, upload_sessions.c.file_id.is_(None))
                    .values(object_key=key, object_size=stored.size, object_md5=stored.md5))
        if previous is None:  # committed while the bytes arrived: they belong to nothing
            self._store.delete(key)
            raise CosError("AccessDenied", "This upload was already committed (CommitUpload); apply for a new one.")
        if previous.object_key:
            self._store.delete(previous.object_key)

    # -- multipart ----------------------------------------------------------------------------------

    def initiate(self, session: UploadSession) -> str:
        upload_id = secrets.token_hex(16)
        with self._db.write() as conn:
            conn.execute(multipart_uploads.insert().values(
                upload_id=upload_id, session_id=session.session_id, created_ms=now_ms()))
        return upload_id

    def uploads(self, session: UploadSession) -> list[tuple[str, int]]:
        """(UploadId, created ms) of the session's multipart uploads in progress, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(multipart_uploads.c.upload_id, multipart_uploads.c.created_ms)
                                .where(multipart_uploads.c.session_id == session.session_id)
                                .order_by(multipart_uploads.c.created_ms)).all()
        return [tuple(row) for row in rows]

    def upload_part(self, session: UploadSession, upload_id: str, number: int, chunks: Iterable[bytes],
                    content_md5: str | None) -> str:
        """UploadPart: the part's ETag (hex MD5). A part sent again replaces the earlier one."""
        self._check_upload(session, upload_id)
        if not 1 <= number <= MAX_PART_NUMBER:
            raise CosError("InvalidArgument", f"partNumber must be from 1 to {MAX_PART_NUMBER}.")
        key = f"{session.prefix}parts/{upload_id}/{number}-{secrets.token_hex(8)}"
        stored = self._stream(key, chunks, self.max_input_bytes, _expected_md5(content_md5))
        previous = self._record_part(upload_id, number, key, stored)
        if previous:
            self._store.delete(previous)
        return stored.md5

    def _record_part(self, upload_id: str, number: int, key: str, stored) -> str | None:
        """Make ``key`` the part's object; the object key it replaces, if any. Two uploads of one
        part at once (PostgreSQL): the second's insert meets the first's row once that commits,
        and is tried again over it, so the later upload wins, as in COS."""
        tries = 3
        while True:
            try:
                with self._db.write() as conn:
                    held = (multipart_parts.c.upload_id == upload_id, multipart_parts.c.part_number == number)
                    previous = conn.execute(sa.select(multipart_parts.c.object_key).where(*held)).scalar()
                    conn.execute(multipart_parts.delete().where(*held))
                    conn.execute(multipart_parts.insert().values(
                        upload_id=upload_id, part_number=number, object_key=key, size=stored.size,
                        etag=stored.md5, created_ms=now_ms()))
                return previous
            except sa.exc.IntegrityError:
                tries -= 1
                if not tries:
                    raise

    def list_parts(self, session: UploadSession, upload_id: str) -> list[Part]:
        self._check_upload(session, upload_id)
        return [Part(number, size, etag, modified) for number, _key, size, etag, modified in self._parts(upload_id)]

    def complete(self, session: UploadSession, upload_id: str, listed: list[tuple[int, str]]):
        """CompleteMultipartUpload with the client's (PartNumber, ETag) list: checked against what was
        uploaded, then the parts are streamed in order into one object. Returns (object, multipart
        ETag, cleanup): ``cleanup()`` deletes the part objects (the caller runs it after answering;
        what a crash leaves of them is the sweeper's)."""
        self._check_upload(session, upload_id)
        if not listed:
            raise CosError("MalformedXML", "The parts list is empty.")
        numbers = [number for number, _etag in listed]
        if numbers != sorted(set(numbers)):
            raise CosError("InvalidPartOrder", "The parts list must be in ascending PartNumber order, each once.")
        uploaded = {number: (key, size, etag) for number, key, size, etag, _modified in self._parts(upload_id)}
        for index, (number, etag) in enumerate(listed):
            if number not in uploaded:
                raise CosError("InvalidPart", f"Part {number} was not uploaded (UploadId {upload_id}).")
            if etag.strip('"').lower() != uploaded[number][2]:
                raise CosError("InvalidPart", f"The ETag of part {number} does not match the uploaded part.")
            if index < len(listed) - 1 and uploaded[number][1] < MIN_PART_BYTES:
                raise CosError("EntityTooSmall", f"Part {number} is {uploaded[number][1]} bytes; every part but "
                                                 f"the last must be at least {MIN_PART_BYTES} bytes.")
        total = sum(uploaded[number][1] for number in numbers)
        if total > self.max_input_bytes:
            raise CosError("EntityTooLarge", f"The object would be {total} bytes, over the limit of "
                                             f"{self.max_input_bytes} bytes.")
        key = f"{session.prefix}objects/{secrets.token_hex(8)}"
        parts = (self._store.open(uploaded[number][0]) for number in numbers)
        stored = self._stream(key, chain.from_iterable(parts), self.max_input_bytes, None)
        self._set_object(session, key, stored)
        leftovers = self._forget_upload(upload_id)
        digest = hashlib.md5(b"".join(bytes.fromhex(uploaded[number][2]) for number in numbers)).hexdigest()
        return stored, f"{digest}-{len(numbers)}", lambda: self._delete_all(leftovers)

    def abort(self, session: UploadSession, upload_id: str) -> None:
        self._check_upload(session, upload_id)
        self._drop_upload(upload_id)

    def _check_upload(self, session: UploadSession, upload_id: str) -> None:
        with self._db.read() as conn:
            owner = conn.execute(sa.select(multipart_uploads.c.session_id).where(
                multipart_uploads.c.upload_id == upload_id)).scalar()
        if owner != session.session_id:
            raise CosError("NoSuchUpload", "The specified multipart upload does not exist (completed, aborted "
                                           "or never started).")

    def _parts(self, upload_id: str) -> list:
        with self._db.read() as conn:
            return conn.execute(sa.select(
                multipart_parts.c.part_number, multipart_parts.c.object_key, multipart_parts.c.size,
                multipart_parts.c.etag, multipart_parts.c.created_ms).where(
                multipart_parts.c.upload_id == upload_id).order_by(multipart_parts.c.part_number)).all()

    def _drop_upload(self, upload_id: str) -> None:
        self._delete_all(self._forget_upload(upload_id))

    def _forget_upload(self, upload_id: str) -> list[str]:
        """Delete the upload's rows; the keys of its part objects, to delete next (rows first: an
        object without a row is what the sweeper removes)."""
        keys = [row[1] for row in self._parts(upload_id)]
        with self._db.write() as conn:
            conn.execute(multipart_parts.delete().where(multipart_parts.c.upload_id == upload_id))
            conn.execute(multipart_uploads.delete().where(multipart_uploads.c.upload_id == upload_id))
        return keys

    def _delete_all(self, keys: list[str]) -> None:
        for key in keys:
            self._store.delete(key)

    def _stream(self, key: str, chunks: Iterable[bytes], limit: int, expected_md5: bytes | None) -> StoredObject:
        """Write ``chunks`` under ``key``, refusing (nothing stored) past ``limit`` bytes or when the
        MD5 differs from ``expected_md5``: the check fails inside the stream, before the put completes."""
        digest = hashlib.md5()
        size = 0

        def checked() -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise CosError("EntityTooLarge", f"The object is larger than the limit of {limit} bytes.")
                digest.update(chunk)
                yield chunk
            if expected_md5 is not None and digest.digest() != expected_md5:
                raise CosError("InvalidDigest", "The Content-MD5 you specified did not match what was received.")

        self._store.put(key, checked())
        return StoredObject(size, digest.hexdigest())


# -- checks shared with PullUpload --------------------------------------------------------------------

def checked_media_type(value: str, name: str) -> str:
    media_type = value.strip().lower().lstrip(".")
    if media_type not in IMAGE_TYPES:
        raise ApiError("InvalidParameterValue.MediaType",
                       f"{name} must be an image type, one of {', '.join(IMAGE_TYPES)}; got {value!r}.")
    return media_type


def checked_expire_time(value: str | None, now) -> str | None:
    if not value:
        return None
    moment = parse_iso(value)
    if moment is None:
        raise ApiError("InvalidParameterValue.ExpireTime",
                       f"ExpireTime must be an ISO 8601 time such as 2026-01-20T03:02:33Z; got {value!r}.")
    if moment <= now:
        raise ApiError("InvalidParameterValue.ExpireTime", f"ExpireTime {value!r} is not in the future.")
    return iso_utc(moment)


def url_media_type(url: str) -> str:
    """The image type a URL's path names (``photo.PNG`` -> ``png``), or "" (then the header decides)."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    return suffix if suffix in IMAGE_TYPES else ""


def _expected_md5(content_md5: str | None) -> bytes | None:
    if content_md5 is None:
        return None
    try:
        expected = base64.b64decode(content_md5.strip(), validate=True)
    except (binascii.Error, ValueError):
        expected = b""
    if len(expected) != 16:
        raise CosError("InvalidDigest", "Content-MD5 must be the Base64 of the body's 16-byte MD5.")
    return expected


def _session_key_error(why: str) -> ApiError:
    return ApiError("InvalidParameterValue.VodSessionKey", f"VodSessionKey {why}.")
