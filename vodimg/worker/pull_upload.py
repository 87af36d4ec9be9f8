"""Running one claimed PullUpload task: fetch the URL (through the URL guard, bounded by the input
limit while it streams), check that it is an image from its header, store it, and finish.

Idempotent like image tasks (DESIGN.md 5): the object key and the FileId come from the TaskId, and
one transaction, conditional on the fencing token, sets FINISH, inserts the media row and the
PullComplete event. A worker killed anywhere leaves either no media file or the whole one; the
reaper gives the task to another attempt, which finds the stored bytes if they were written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import orjson

from vodimg.domain.clock import iso_utc, utc_now
from vodimg.domain.media import HEADER_BYTES, MediaFile, basic_info, file_id_for, probe_header
from vodimg.domain.tasks import pull_task_record
from vodimg.domain.uploads import SOURCE_TYPE_UPLOAD
from vodimg.netguard import FetchFailed, UrlPolicy, UrlRefused, fetch
from vodimg.objectstore import ObjectStore
from vodimg.queue import ClaimedTask, TaskQueue
from vodimg.worker.runner import ERR_SOURCE, TaskFailed, TaskRunner

PULL_COMPLETE = "PullComplete"
# Container -> the Type (extension) a pulled file gets when neither MediaType nor the URL names one.
EXTENSIONS = {"jpeg": "jpg", "tiff": "tif"}


def pull_key(task: ClaimedTask) -> str:
    return f"pulls/{task.sub_app_id}/{task.task_id}"


@dataclass
class PullUploadRunner(TaskRunner):
    event_type = PULL_COMPLETE

    store: ObjectStore
    queue: TaskQueue
    url_policy: UrlPolicy
    max_input_bytes: int
    public_base: str
    region: str

    def run(self, task: ClaimedTask, report: Callable[[int], None]) -> None:
        source = orjson.loads(task.source)
        try:
            data = self._fetch(source["url"], report)
            file = self._store(task, source, data)
        except TaskFailed as failed:
            self.finish_failed(task.task_id, task.attempt, failed.err_code, str(failed))
            return
        self._finish(task, file)

    def _fetch(self, url: str, report: Callable[[int], None]) -> bytes:
        def progress(received: int, total: int | None) -> None:
            if total:
                report(min(99, received * 100 // total))

        try:
            return fetch(url, self.url_policy, self.max_input_bytes, progress)
        except UrlRefused as refused:
            raise TaskFailed(ERR_SOURCE, f"MediaUrl refused: {refused}") from None
        except FetchFailed as failed:
            raise TaskFailed(ERR_SOURCE, f"Could not fetch MediaUrl: {failed}") from None

    def _store(self, task: ClaimedTask, source: dict, data: bytes) -> MediaFile:
        header = probe_header(data[:HEADER_BYTES])
        if header is None:
            raise TaskFailed(ERR_SOURCE, "MediaUrl is not an image this service reads (jpg, png, gif, bmp, webp, "
                                         "tif): its header is not one of these formats.")
        key = pull_key(task)
        if not self.store.put(key, data):  # an earlier attempt stored it: describe those bytes
            data = self.store.read(key)
            header = probe_header(data[:HEADER_BYTES]) or header
        now = iso_utc(utc_now())
        return MediaFile(
            file_id=file_id_for(task.task_id), sub_app_id=task.sub_app_id,
            name=source["media_name"] or _default_name(source["url"], task.task_id),
            type=source["media_type"] or EXTENSIONS.get(header.container, header.container),
            class_id=source["class_id"], source_type=SOURCE_TYPE_UPLOAD, source_context=source["source_context"],
            size=len(data), container=header.container, width=header.width, height=header.height,
            md5=hashlib.md5(data).hexdigest(), content_type=header.content_type, storage_key=key,
            create_time=now, update_time=now, expire_time=source["expire_time"])

    def _finish(self, task: ClaimedTask, file: MediaFile) -> bool:
        info = basic_info(file, self.public_base, self.region)
        output = {"FileId": file.file_id, "FileType": file.type, "MediaName": file.name,
                  "MediaBasicInfo": info, "MetaData": file.meta_data()}
        values = {"err_code": 0, "message": "SUCCESS", "progress": 100, "finish_time": file.create_time,
                  "output": orjson.dumps(output).decode()}
        return self.finish_done(task, values, file)

    def event_content(self, row) -> dict:
        return {"EventType": PULL_COMPLETE, "PullCompleteEvent": pull_task_record(row, self.public_base)}

def _default_name(url: str, task_id: str) -> str:
    stem = PurePosixPath(urlsplit(url).path).stem
    return stem[:64] if stem else task_id.rsplit("-", 1)[-1]
