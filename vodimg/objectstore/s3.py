"""The object store in an S3 bucket through boto3 (AWS S3, COS, MinIO, Ceph, Swift s3api, ...).

``s3://bucket/prefix`` names the bucket and a key prefix; endpoint, region and credentials come
from the options or the usual AWS variables (see docs/deploy.md). The interface is the one of
``vodimg.objectstore``, unchanged:

- Put-once: ``PutObject`` (and ``CompleteMultipartUpload``) with ``If-None-Match: *``; a 412
  answer means the key exists and the put returns False. A server that answers 501 to the
  condition, or that ``check()`` finds ignoring it, gets head-then-put instead: two writers racing
  on one new key may then both "win" and the last one's bytes stay (a documented race; our keys
  are derived from TaskIds, so racing writers write the same output).
- Bodies up to ``part_bytes`` go in one PUT; a longer iterable of chunks goes as a multipart
  upload, one part in memory at a time. A failed multipart upload is aborted; one left by a
  crash is aborted by ``remove_stale_temporaries`` (the sweeper calls it).
- Checksums only where the API requires them (``request_checksum_calculation="when_required"``):
  third-party servers reject the newer default trailers.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from functools import partial
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from vodimg.objectstore import CHUNK_BYTES, NoSuchObject, ObjectInfo, ObjectStoreError, S3Options, check_key

logger = logging.getLogger("vodimg.objectstore")

PART_BYTES = 8 * 1024 * 1024    # multipart part size, and the largest body sent in one PUT
MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last
PROBE_PREFIX = ".vodimg-probe/"
CONFLICT_RETRIES = 5            # 409 ConditionalRequestConflict: another conditional write in flight
ADDRESSING_STYLES = ("path", "virtual")


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix ending in "/" or empty) of ``s3://bucket/prefix``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ObjectStoreError(f"storage URL {url!r}: use s3://bucket or s3://bucket/prefix")
    prefix = parts.path.strip("/")
    return parts.netloc, prefix + "/" if prefix else ""


def make_client(options: S3Options, env=None):
    """A boto3 S3 client for ``options``, credentials from boto3's usual chain (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, instance roles ...)."""
    env = os.environ if env is None else env
    endpoint = options.endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    addressing = options.addressing or ("path" if endpoint else "virtual")
    if addressing not in ADDRESSING_STYLES:
        raise ObjectStoreError(f"S3 addressing {addressing!r}: use path or virtual")
    session = boto3.session.Session()
    region = options.region or env.get("AWS_REGION") or session.region_name or "us-east-1"
    config = Config(s3={"addressing_style": addressing}, signature_version="s3v4",
                    request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=60,
                    max_pool_connections=32)
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


class S3ObjectStore:
    def __init__(self, client, bucket: str, prefix: str = "", part_bytes: int = PART_BYTES):
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be at least {MIN_PART_BYTES}")
        self.client, self.bucket, self.prefix, self.part_bytes = client, bucket, prefix, part_bytes
        # Whether the server honours If-None-Match: * (check() finds out; a 501 switches it off).
        self.conditional_put = True
        self.conditional_complete = True

    @classmethod
    def from_url(cls, url: str, options: S3Options = S3Options()) -> "S3ObjectStore":
        bucket, prefix = parse_url(url)
        return cls(make_client(options), bucket, prefix)

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.client.meta.endpoint_url}"

    def _name(self, key: str) -> str:
        check_key(key)
        return self.prefix + key

    # -- writes ------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | Iterable[bytes]) -> bool:
        name = self._name(key)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._put_single(name, bytes(data))
        return self._put_stream(name, iter(data))

    def _put_single(self, name: str, body: bytes) -> bool:
        return self._write_once(name, "conditional_put", partial(
            self.client.put_object, Bucket=self.bucket, Key=name, Body=body))

    def _write_once(self, name: str, flag: str, send) -> bool:
        """``send(**condition)`` writes ``name``; True when this call created it. ``flag`` names the
        attribute that says whether the server honours If-None-Match on this kind of write.
        (A retried request whose first try did create the key answers 412: False, harmlessly.)"""
        for attempt in range(CONFLICT_RETRIES):
            if not getattr(self, flag):
                if self._exists(name):
                    return False
                self._call("put", name, send)
                return True
            try:
                send(IfNoneMatch="*")
                return True
            except ClientError as error:
                status = _status(error)
                if status == 412:
                    return False
                if status == 501:
                    self._unconditional(flag, f"it answers 501 {_code(error)}")
                elif status == 409:  # ConditionalRequestConflict: another write of the key in flight
                    time.sleep(0.05 * (attempt + 1))
                else:
                    raise self._wrap(error, "put", name) from None
            except BotoCoreError as error:
                raise self._wrap(error, "put", name) from None
        raise ObjectStoreError(f"S3 put of {name!r} in {self.where}: the server kept answering 409 "
                               "ConditionalRequestConflict")

    def _unconditional(self, flag: str, why: str) -> None:
        setattr(self, flag, False)
        write = "PUT" if flag == "conditional_put" else "multipart completion"
        logger.warning("%s: the server does not honour If-None-Match on %s (%s); using head-then-write, "
                       "which two writers of one new key can race", self.where, write, why)

    def _put_stream(self, name: str, chunks: Iterator[bytes]) -> bool:
        """One PUT when the stream ends within a part, else a multipart upload holding one part in
        memory at a time."""
        buffer = _take(chunks, self.part_bytes)
        if len(buffer) < self.part_bytes:
            return self._put_single(name, bytes(buffer))
        if self._exists(name):  # do not upload a large body only to be refused
            return False
        upload_id = self._call("put", name, self.client.create_multipart_upload,
                               Bucket=self.bucket, Key=name)["UploadId"]
        parts = []
        try:
            while buffer:
                number = len(parts) + 1
                answer = self._call("put", name, self.client.upload_part, Bucket=self.bucket, Key=name,
                                    UploadId=upload_id, PartNumber=number, Body=buffer)
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                buffer = None  # let the part go before reading the next one
                buffer = _take(chunks, self.part_bytes)
            created = self._complete(name, upload_id, parts)
        except BaseException:
            self._abort(name, upload_id)
            raise
        if not created:
            self._abort(name, upload_id)
        return created

    def _complete(self, name: str, upload_id: str, parts: list[dict]) -> bool:
        return self._write_once(name, "conditional_complete", partial(
            self.client.complete_multipart_upload, Bucket=self.bucket, Key=name, UploadId=upload_id,
            MultipartUpload={"Parts": parts}))

    def _abort(self, name: str, upload_id: str, quiet: bool = False) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except (ClientError, BotoCoreError) as error:  # the sweeper aborts it later
            if not quiet:
                logger.warning("%s: could not abort the multipart upload of %s: %s", self.where, name, error)

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _status(error) != 404 or _code(error) == "NoSuchBucket":
                raise self._wrap(error, "delete", name) from None
        except BotoCoreError as error:
            raise self._wrap(error, "delete", name) from None

    # -- reads -------------------------------------------------------------------------------------

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        name = self._name(key)
        if end is not None and end <= start:
            if not self._exists(name):
                raise NoSuchObject(key)
            return iter(())
        request = dict(Bucket=self.bucket, Key=name)
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(**request)["Body"]
        except ClientError as error:
            if _status(error) == 404 and _code(error) != "NoSuchBucket":
                raise NoSuchObject(key) from None
            if _status(error) == 416:  # start at or past the end: nothing, as from a file
                return iter(())
            raise self._wrap(error, "get", name) from None
        except BotoCoreError as error:
            raise self._wrap(error, "get", name) from None
        return self._stream(body, name)

    def _stream(self, body, name: str) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        except (BotoCoreError, OSError) as error:
            raise self._wrap(error, "get", name) from None
        finally:
            body.close()

    def read(self, key: str) -> bytes:
        return b"".join(self.open(key))

    def head(self, key: str) -> ObjectInfo | None:
        name = self._name(key)
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _status(error) == 404:
                return None
            raise self._wrap(error, "head", name) from None
        except BotoCoreError as error:
            raise self._wrap(error, "head", name) from None
        return ObjectInfo(key, answer["ContentLength"], answer["LastModified"].timestamp())

    def _exists(self, name: str) -> bool:
        return self.head(name[len(self.prefix):]) is not None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"][len(self.prefix):], item["Size"], item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as error:
            raise self._wrap(error, "list", self.prefix + prefix) from None

    def presigned_url(self, key: str, expires: int, content_type: str | None = None) -> str:
        """A URL that GETs ``key`` without credentials for ``expires`` seconds (SigV4), answering
        with ``content_type``."""
        params = {"Bucket": self.bucket, "Key": self._name(key)}
        if content_type:
            params["ResponseContentType"] = content_type
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    # -- upkeep ------------------------------------------------------------------------------------

    def remove_stale_temporaries(self, older_than_seconds: float = 3600) -> int:
        """Abort multipart uploads under the prefix that a crashed writer left; returns how many."""
        cutoff, removed = time.time() - older_than_seconds, 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"].timestamp() < cutoff:
                        self._abort(upload["Key"], upload["UploadId"])
                        removed += 1
        except (ClientError, BotoCoreError) as error:
            raise self._wrap(error, "list uploads", self.prefix) from None
        return removed

    def check(self) -> None:
        """The start-up check: the bucket exists and these credentials may put, get, list and delete
        in it (a probe object, removed again); also finds out whether the server honours
        If-None-Match. Raises ObjectStoreError with a one-line reason."""
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        name = self._name(probe)
        self._put_single(name, b"1")  # a 501 to the condition switches it off here
        try:
            if self.read(probe) != b"1":
                raise ObjectStoreError(f"{self.where}: the start-up probe read back other bytes than it wrote")
            self._call("list", name, self.client.list_objects_v2, Bucket=self.bucket, Prefix=name, MaxKeys=1)
            if self._put_single(name, b"2"):
                self._unconditional("conditional_put", "it ignores it")
            self._check_conditional_complete(name)
        finally:
            self.delete(probe)

    def _check_conditional_complete(self, name: str) -> None:
        """A one-part multipart upload onto the existing probe must be refused."""
        if not self.conditional_complete:
            return
        upload_id = self._call("put", name, self.client.create_multipart_upload,
                               Bucket=self.bucket, Key=name)["UploadId"]
        try:
            etag = self._call("put", name, self.client.upload_part, Bucket=self.bucket, Key=name,
                              UploadId=upload_id, PartNumber=1, Body=b"3")["ETag"]
            if self._complete(name, upload_id, [{"PartNumber": 1, "ETag": etag}]):
                self._unconditional("conditional_complete", "it ignores it")
        finally:
            self._abort(name, upload_id, quiet=True)  # refused as it should be, or completed

    # -- errors ------------------------------------------------------------------------------------

    def _call(self, what: str, name: str, method, **request):
        try:
            return method(**request)
        except (ClientError, BotoCoreError) as error:
            raise self._wrap(error, what, name) from None

    def _wrap(self, error: Exception, what: str, name: str) -> ObjectStoreError:
        """An ObjectStoreError whose one-line message says what to fix."""
        bucket, endpoint = self.bucket, self.client.meta.endpoint_url
        if isinstance(error, NoCredentialsError):
            return ObjectStoreError(f"no S3 credentials for {endpoint}: set AWS_ACCESS_KEY_ID and "
                                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")
        if isinstance(error, BotoCoreError):
            return ObjectStoreError(f"S3 {what} of {name!r} at {endpoint} failed: {error}")
        code, status = _code(error), _status(error)
        if code == "NoSuchBucket":
            return ObjectStoreError(f"S3 bucket {bucket!r} does not exist at {endpoint} (create it, or "
                                    "fix --storage-url / VODIMG_STORAGE_URL)")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
            return ObjectStoreError(f"S3 at {endpoint} refused the credentials ({code}): check "
                                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and "
                                    "the region (AWS_REGION)")
        if code == "AccessDenied" or status == 403:
            return ObjectStoreError(f"S3 at {endpoint} denied {what} in bucket {bucket!r} (AccessDenied): "
                                    "the credentials need s3:PutObject, GetObject, DeleteObject and ListBucket")
        message = error.response.get("Error", {}).get("Message", "")
        return ObjectStoreError(f"S3 {what} of {name!r} in bucket {bucket!r} at {endpoint} failed: "
                                f"{code} (HTTP {status}) {message}".rstrip())


def _take(chunks: Iterator[bytes], limit: int) -> bytearray:
    """Chunks joined until at least ``limit`` bytes (or the end)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= limit:
            break
    return buffer


def _status(error: ClientError) -> int:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
