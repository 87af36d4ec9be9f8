"""Served media files: ``GET``/``HEAD /files/{SubAppId}/{FileId}/{name}.{ext}`` (DESIGN.md 4).

The bytes stream from the object store; ``ETag`` is the file's MD5, ``Range`` gives 206 (one range),
``If-None-Match`` 304. A deleted, expired or unknown file, or a path that names another
application, answers 404. With presigned downloads on (``VODIMG_S3_PRESIGNED_DOWNLOADS``), a GET
that would stream answers 302 to a presigned URL of the bucket instead (the client sends its
``Range`` there); HEAD, 304 and 404 stay answered here. Nothing here looks at pixels: the
Content-Type was recorded when the file was made.
"""

from __future__ import annotations

import re
from email.utils import format_datetime
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

CACHE_CONTROL = "public, max-age=3600"
REDIRECT_CACHE_CONTROL = "private, no-store"  # a presigned URL expires: caches must not keep it
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def file_routes(lookup, store, presign_seconds: int | None = None) -> list[Route]:
    """``lookup(sub_app_id, file_id)`` gives a ``MediaFile`` or None; ``store`` holds the bytes;
    ``presign_seconds``: redirect GETs to presigned URLs valid that long (None: stream)."""

    async def serve(request: Request) -> Response:
        params = request.path_params
        if not params["sub_app_id"].isdigit() or len(params["sub_app_id"]) > 19:
            return _not_found()
        file = await run_in_threadpool(lookup, int(params["sub_app_id"]), params["file_id"])
        if file is None:
            return _not_found()
        info = await run_in_threadpool(store.head, file.storage_key)
        if info is None:
            return _not_found()
        headers = {"ETag": f'"{file.md5}"', "Last-Modified": _http_date(file.update_time),
                   "Cache-Control": CACHE_CONTROL, "Accept-Ranges": "bytes"}
        if _matches(request.headers.get("if-none-match"), file.md5):
            return Response(status_code=304, headers=headers)
        if presign_seconds is not None and request.method == "GET":
            location = await run_in_threadpool(store.presigned_url, file.storage_key, presign_seconds,
                                               file.content_type)
            if location is not None:
                return Response(status_code=302, headers={"Location": location, "ETag": headers["ETag"],
                                                          "Cache-Control": REDIRECT_CACHE_CONTROL})
        start, end, status = 0, info.size, 200
        wanted = request.headers.get("range", "").strip()
        if _RANGE.match(wanted):  # anything else (e.g. several ranges) gets the whole file
            span = _range(wanted, info.size)
            if span is None:
                return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{info.size}"})
            start, end = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=file.content_type)
        chunks = await run_in_threadpool(store.open, file.storage_key, start, end)
        return StreamingResponse(chunks, status_code=status, headers=headers, media_type=file.content_type)

    return [Route("/files/{sub_app_id}/{file_id}/{name}", serve, methods=["GET", "HEAD"])]


def _not_found() -> Response:
    return PlainTextResponse("Not Found: no such file (it may have been deleted or expired).\n", status_code=404)


def _matches(if_none_match: str | None, md5: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or f'"{md5}"' in tags


def _range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``bytes=`` range, or None when it is not satisfiable."""
    match = _RANGE.match(header)
    if size == 0:
        return None
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0:
            return None
        return max(0, size - int(last)), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    return (start, end) if start < size and start < end else None


def _http_date(iso: str) -> str:
    return format_datetime(datetime.fromisoformat(iso), usegmt=True)
