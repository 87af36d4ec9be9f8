"""The COS XML API at the service's own endpoint, for uploads (DESIGN.md 4).

So that ``cos-python-sdk-v5`` uploads unchanged (``CosConfig(Domain="HOST:PORT", Scheme="http",
SecretId=..., SecretKey=..., Token=...)``), this answers, for the key of an upload session
(``/upload/<32 hex>/<name>.<ext>``): PUT Object, HEAD Object, InitiateMultipartUpload
(``POST key?uploads``), UploadPart (``PUT key?partNumber&uploadId``), CompleteMultipartUpload
(``POST key?uploadId``), AbortMultipartUpload (``DELETE key?uploadId``), ListParts
(``GET key?uploadId``), and ListMultipartUploads (``GET /?uploads&prefix=key``, which
``upload_file`` calls to resume). Requests are authenticated by the COS request signature
(``q-sign-algorithm=sha1``: HMAC-SHA1 over the method, path, signed URL parameters and signed
headers, with the key derived from the key time) made with the session's temporary key, plus
``x-cos-security-token``; a temporary key may touch its one key only. Errors are COS XML
(``<Error><Code>AccessDenied</Code>...``) with COS's HTTP status.

Response headers arrive in lowercase (uvicorn writes them so): ``put_object``'s returned dict has
``etag``, where Tencent's COS gives ``ETag``.

Bodies stream to the object store (never whole in memory), bounded by the input limit
(``VODIMG_MAX_INPUT_BYTES``), not by the API's 10 MB body limit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import anyio
import anyio.from_thread
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from vodimg.domain.uploads import CosError, CosUploads, UploadSession

logger = logging.getLogger("vodimg.cos")

UPLOAD_PREFIX = "/upload/"
MAX_XML_BODY = 1024 * 1024  # CompleteMultipartUpload's parts list
BATCH_BYTES = 256 * 1024  # body bytes handed to the store at a time
SKEW_SECONDS = 900  # a q-sign-time starting further ahead than this: RequestTimeTooSkewed
STATUS = {
    "AccessDenied": 403, "SignatureDoesNotMatch": 403, "InvalidAccessKeyId": 403, "RequestTimeTooSkewed": 403,
    "EntityTooLarge": 400, "EntityTooSmall": 400, "InvalidDigest": 400, "InvalidPart": 400,
    "InvalidPartOrder": 400, "InvalidArgument": 400, "MalformedXML": 400, "InvalidRequest": 400,
    "NoSuchUpload": 404, "NoSuchKey": 404, "MethodNotAllowed": 405, "InternalError": 500,
}
AUTH_FIELDS = ("q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list", "q-url-param-list",
               "q-signature")


def is_cos_request(scope) -> bool:
    """Upload keys, and the bucket-level ListMultipartUploads (``GET /?uploads``, COS-signed)."""
    if scope["type"] != "http":
        return False
    if scope["path"].startswith(UPLOAD_PREFIX):
        return True
    if scope["path"] == "/" and scope["method"] == "GET" and b"uploads" in scope["query_string"]:
        return any(name == b"authorization" and value.startswith(b"q-sign-algorithm")
                   for name, value in scope["headers"])
    return False


class CosRoute(BaseRoute):
    """Matches COS requests before the API endpoint (``create_app(routes=...)``)."""

    def __init__(self, uploads: CosUploads):
        self.uploads = uploads

    def matches(self, scope):
        return (Match.FULL, {}) if is_cos_request(scope) else (Match.NONE, {})

    async def handle(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        request_id = uuid.uuid4().hex
        try:
            response = await self._answer(request)
        except CosError as error:
            response = error_response(error, request.url.path, request_id)
        except Exception:  # noqa: BLE001 - the client gets InternalError, the log the trace
            logger.exception("COS InternalError request %s", request_id)
            response = error_response(CosError("InternalError", "Internal error."), request.url.path, request_id)
        response.headers["x-cos-request-id"] = request_id
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        query = parse_qsl(request.url.query, keep_blank_values=True)
        params = {name: value for name, value in query}
        session = await anyio.to_thread.run_sync(self._authenticated, request, query)
        path, method = request.url.path, request.method
        if path == "/":
            if params.get("prefix", "") != session.storage_path:
                raise CosError("AccessDenied", f"This credential may list uploads of {session.storage_path} only.")
            uploads = await anyio.to_thread.run_sync(self.uploads.uploads, session)
            return _xml(_list_uploads_xml(session, uploads))
        if path[1:] != session.storage_path:
            raise CosError("AccessDenied", f"This credential may write /{session.storage_path} only.")
        if session.file_id is not None and method in ("PUT", "POST"):  # refused before any byte is read
            raise CosError("AccessDenied", "This upload was already committed (CommitUpload); apply for a new one.")
        if method == "PUT":
            return await self._put(request, session, params)
        if method == "POST" and "uploads" in params:
            upload_id = await anyio.to_thread.run_sync(self.uploads.initiate, session)
            return _xml(f"<InitiateMultipartUploadResult><Bucket>{_bucket(session)}</Bucket>"
                        f"<Key>{escape(session.storage_path)}</Key><UploadId>{upload_id}</UploadId>"
                        f"</InitiateMultipartUploadResult>")
        if method == "POST" and "uploadId" in params:
            return await self._complete(request, session, params["uploadId"])
        if method == "DELETE" and "uploadId" in params:
            await anyio.to_thread.run_sync(self.uploads.abort, session, params["uploadId"])
            return Response(status_code=204)
        if method == "GET" and "uploadId" in params:
            parts = await anyio.to_thread.run_sync(self.uploads.list_parts, session, params["uploadId"])
            return _xml(_list_parts_xml(session, params["uploadId"], parts))
        if method == "HEAD":
            stored = await anyio.to_thread.run_sync(self.uploads.head_object, session)
            return Response(status_code=200, headers={"ETag": f'"{stored.md5}"', "Content-Length": str(stored.size)})
        raise CosError("MethodNotAllowed", f"{method} is not supported here; this endpoint takes uploads only.")

    # -- bodies -------------------------------------------------------------------------------------

    async def _put(self, request: Request, session: UploadSession, params: dict) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.uploads.max_input_bytes:
            raise CosError("EntityTooLarge", f"The body is {declared} bytes, over the limit of "
                                             f"{self.uploads.max_input_bytes} bytes.")
        content_md5 = request.headers.get("content-md5")
        chunks = _sync_chunks(request)
        if "uploadId" in params or "partNumber" in params:
            number = params.get("partNumber", "")
            if not number.isdigit():
                raise CosError("InvalidArgument", "partNumber must be a number from 1 to 10000.")
            etag = await anyio.to_thread.run_sync(
                self.uploads.upload_part, session, params.get("uploadId", ""), int(number), chunks, content_md5)
            return Response(status_code=200, headers={"ETag": f'"{etag}"'})
        stored = await anyio.to_thread.run_sync(self.uploads.put_object, session, chunks, content_md5)
        return Response(status_code=200, headers={"ETag": f'"{stored.md5}"'})

    async def _complete(self, request: Request, session: UploadSession, upload_id: str) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_XML_BODY:
                raise CosError("MalformedXML", f"The parts list is larger than {MAX_XML_BODY} bytes.")
        listed = _parts_list(bytes(body))
        _stored, etag, cleanup = await anyio.to_thread.run_sync(self.uploads.complete, session, upload_id, listed)
        location = f"{request.url.scheme}://{request.url.netloc}/{quote(session.storage_path)}"
        response = _xml(f"<CompleteMultipartUploadResult><Location>{escape(location)}</Location>"
                        f"<Bucket>{_bucket(session)}</Bucket><Key>{escape(session.storage_path)}</Key>"
                        f"<ETag>\"{etag}\"</ETag></CompleteMultipartUploadResult>")
        response.background = BackgroundTask(cleanup)  # the parts' objects, after the answer
        return response

    # -- the signature --------------------------------------------------------------------------

    def _authenticated(self, request: Request, query: list[tuple[str, str]]) -> UploadSession:
        authorization = request.headers.get("authorization", "")
        if not authorization:
            raise CosError("AccessDenied", "The request is not signed: an Authorization header is required.")
        return verify(request.method, request.url.path, query, dict(request.headers), authorization,
                      self.uploads.session_for, time.time())


def verify(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], authorization: str,
           session_for, now: float) -> UploadSession:
    """The session whose temporary key signed this request; CosError otherwise. ``headers`` by
    lowercase name; ``path`` URL-decoded."""
    fields = dict(item.partition("=")[::2] for item in authorization.split("&"))
    if any(name not in fields for name in AUTH_FIELDS) or fields["q-sign-algorithm"] != "sha1":
        raise CosError("AccessDenied", "The Authorization header is not a COS q-sign-algorithm=sha1 signature.")
    session = session_for(fields["q-ak"])
    if session is None:
        raise CosError("InvalidAccessKeyId", "The access key Id you provided does not exist in our records.")
    for name in ("q-sign-time", "q-key-time"):
        start, end = _window(fields[name], name)
        if end < now:
            raise CosError("AccessDenied", f"Request has expired: {name} ended at {end}, now is {int(now)}.")
        if start > now + SKEW_SECONDS:
            raise CosError("RequestTimeTooSkewed",
                           "The difference between the request time and the server's time is too large.")
    if session.expires_ms < now * 1000:
        raise CosError("AccessDenied", "The temporary credential has expired; call ApplyUpload again.")
    if not hmac.compare_digest(headers.get("x-cos-security-token", ""), session.temp_token):
        raise CosError("AccessDenied", "x-cos-security-token is missing or is not the temporary credential's Token.")
    header_names = [name for name in fields["q-header-list"].split(";") if name]
    param_names = [name for name in fields["q-url-param-list"].split(";") if name]
    params = {_encoded(name).lower(): _encoded(value) for name, value in query}
    signed_params = "&".join(f"{name}={params.get(name, '')}" for name in sorted(param_names))
    sign_key = hmac.new(session.temp_secret_key.encode(), fields["q-key-time"].encode(), hashlib.sha1).hexdigest()
    for signed_headers in _header_strings(header_names, headers):
        http_string = f"{method.lower()}\n{path}\n{signed_params}\n{signed_headers}\n"
        to_sign = f"sha1\n{fields['q-sign-time']}\n{hashlib.sha1(http_string.encode()).hexdigest()}\n"
        expected = hmac.new(sign_key.encode(), to_sign.encode(), hashlib.sha1).hexdigest()
        if hmac.compare_digest(expected, fields["q-signature"].lower()):
            return session
    raise CosError("SignatureDoesNotMatch",
                   "The request signature we calculated does not match the signature you provided.")


def _header_strings(names: list[str], headers: dict[str, str]) -> Iterator[str]:
    """The signed-header string; for ``host``, also without the port (the SDK signs the hostname
    it parsed from the URL while sending ``Host: HOST:PORT``)."""
    values = {name: headers.get(name, "") for name in names}

    def joined() -> str:
        return "&".join(f"{_encoded(name).lower()}={_encoded(values[name])}" for name in sorted(names))

    yield joined()
    host = values.get("host", "")
    if "host" in values and ":" in host and not host.endswith("]"):
        values["host"] = host.rsplit(":", 1)[0]
        yield joined()


def _encoded(text: str) -> str:
    return quote(text.encode(), "-_.~")


def _window(text: str, name: str) -> tuple[int, int]:
    start, _, end = text.partition(";")
    if not (start.isdigit() and end.isdigit()):
        raise CosError("AccessDenied", f"{name} must be two Unix times, start;end.")
    return int(start), int(end)


# -- XML ------------------------------------------------------------------------------------------

def error_response(error: CosError, resource: str, request_id: str) -> Response:
    body = (f"<Error><Code>{error.code}</Code><Message>{escape(error.message)}</Message>"
            f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
            f"<TraceId>{request_id}</TraceId></Error>")
    return _xml(body, STATUS.get(error.code, 400))


def _xml(body: str, status: int = 200) -> Response:
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + body, status_code=status,
                    media_type="application/xml")


def _bucket(session: UploadSession) -> str:
    return f"vodimg-{session.sub_app_id}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _list_parts_xml(session: UploadSession, upload_id: str, parts) -> str:
    items = "".join(f"<Part><PartNumber>{part.number}</PartNumber><LastModified>{_iso(part.modified_ms)}"
                    f"</LastModified><ETag>\"{part.etag}\"</ETag><Size>{part.size}</Size></Part>" for part in parts)
    last = parts[-1].number if parts else 0
    return (f"<ListPartsResult><Bucket>{_bucket(session)}</Bucket><Key>{escape(session.storage_path)}</Key>"
            f"<UploadId>{upload_id}</UploadId><StorageClass>STANDARD</StorageClass>"
            f"<PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>{last}</NextPartNumberMarker>"
            f"<MaxParts>10000</MaxParts><IsTruncated>false</IsTruncated>{items}</ListPartsResult>")


def _list_uploads_xml(session: UploadSession, uploads) -> str:
    items = "".join(f"<Upload><Key>{escape(session.storage_path)}</Key><UploadId>{upload_id}</UploadId>"
                    f"<StorageClass>STANDARD</StorageClass><Initiated>{_iso(created)}</Initiated></Upload>"
                    for upload_id, created in uploads)
    return (f"<ListMultipartUploadsResult><Bucket>{_bucket(session)}</Bucket>"
            f"<Prefix>{escape(session.storage_path)}</Prefix><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
            f"<NextKeyMarker></NextKeyMarker><NextUploadIdMarker></NextUploadIdMarker><MaxUploads>1000</MaxUploads>"
            f"<IsTruncated>false</IsTruncated>{items}</ListMultipartUploadsResult>")


def _parts_list(body: bytes) -> list[tuple[int, str]]:
    """(PartNumber, ETag) of CompleteMultipartUpload's body, in the order given."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise CosError("MalformedXML", "The XML you provided was not well-formed.") from None
    listed = []
    for part in root.iter():
        if part.tag.rsplit("}", 1)[-1] != "Part":
            continue
        values = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in part}
        if not values.get("PartNumber", "").isdigit() or "ETag" not in values:
            raise CosError("MalformedXML", "Each Part needs a PartNumber and an ETag.")
        listed.append((int(values["PartNumber"]), values["ETag"]))
    return listed


def _sync_chunks(request: Request) -> Iterator[bytes]:
    """The request body as a blocking iterator, for a worker thread: each batch of about
    ``BATCH_BYTES`` is gathered on the event loop as the store asks for it (one thread hop per batch,
    not per network read), so an upload holds at most one batch in memory."""
    stream = request.stream().__aiter__()
    ended = False

    async def next_batch() -> bytes:
        nonlocal ended
        batch = bytearray()
        while len(batch) < BATCH_BYTES:
            try:
                batch += await stream.__anext__()
            except StopAsyncIteration:
                ended = True
                break
        return bytes(batch)

    while not ended:
        batch = anyio.from_thread.run(next_batch)
        if batch:
            yield batch
