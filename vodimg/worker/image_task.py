"""Running one claimed ProcessImageAsync task: input, engine, output, and the finishing transaction.

Effects are idempotent so that execution may be at least once (DESIGN.md section 5): the output's
object key and FileId come from the TaskId, the object store writes a key once, and one
transaction, conditional on the fencing token, sets FINISH, inserts the output's media row and
inserts the completion event. ErrCode: 40000 bad parameters, 60000 the source (unreachable, not an
image, corrupt, over a limit), 70000 internal (the engine failed on every attempt).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import orjson

from vodimg.domain.clock import iso_utc, utc_now
from vodimg.domain.media import FORMATS, MediaFile, MediaService, file_id_for
from vodimg.domain.tasks import input_key, task_record
from vodimg.engine import EngineError, InvalidConfig, Limits
from vodimg.netguard import FetchFailed, UrlPolicy, UrlRefused, fetch
from vodimg.objectstore import NoSuchObject, ObjectStore
from vodimg.queue import ClaimedTask, ExpiredTask, TaskQueue
from vodimg.worker.engine_pool import EngineCrashed
from vodimg.worker.runner import ERR_PARAMETERS, ERR_SOURCE, TaskFailed, TaskRunner

COMPLETE_EVENT = "ProcessImageAsyncCompleteEvent"
SOURCE_TYPE_OUTPUT = "VideoProcessing"  # VOD's SourceType for a file made by processing


class Retry(Exception):
    """This attempt failed for a reason another attempt may not meet (a crash): try again."""


@dataclass
class ImageTaskRunner(TaskRunner):
    event_type = COMPLETE_EVENT
    store: ObjectStore
    queue: TaskQueue
    media: MediaService
    engine: object  # vodimg.worker.engine_pool.EnginePool, or anything with its run()
    url_policy: UrlPolicy
    limits: Limits
    public_base: str

    def run(self, task: ClaimedTask, report: Callable[[int], None]) -> None:
        """Process ``task`` to the end: FINISH, or back to WAITING for another attempt."""
        try:
            data = self._input(task, report)
            output = self._process(task, data, report)
        except TaskFailed as failed:
            finished = self.finish_failed(task.task_id, task.attempt, failed.err_code, str(failed))
        except Retry as retry:
            finished = self.retry(task, str(retry))
        else:
            finished = self._finish(task, *output)
        if finished and '"object"' in task.source:  # a Base64 input is kept until its task finishes
            self.store.delete(input_key(task.task_id))

    # -- the steps --------------------------------------------------------------------------------

    def _input(self, task: ClaimedTask, report: Callable[[int], None]) -> bytes:
        source = orjson.loads(task.source)
        try:
            if source["kind"] == "url":
                return fetch(source["url"], self.url_policy, self.limits.max_input_bytes)
            if source["kind"] == "media":
                file = self.media.get(task.sub_app_id, source["file_id"])
                if file is None:
                    raise TaskFailed(ERR_SOURCE, f"The source file {source['file_id']} was deleted before processing.")
                return self.store.read(file.storage_key)
            return self.store.read(source["key"])
        except UrlRefused as refused:
            raise TaskFailed(ERR_SOURCE, f"Url refused: {refused}") from None
        except FetchFailed as failed:
            raise TaskFailed(ERR_SOURCE, f"Could not fetch Url: {failed}") from None
        except NoSuchObject:
            raise TaskFailed(ERR_SOURCE, "The source image's stored bytes are missing.") from None

    def _process(self, task: ClaimedTask, data: bytes, report: Callable[[int], None]):
        configure = orjson.loads(task.configure)
        try:
            result = self.engine.run(data, configure, lambda fraction: report(min(99, int(fraction * 100))))
        except EngineCrashed as crashed:
            raise Retry(f"the image engine crashed: {crashed}") from None
        except InvalidConfig as error:
            raise TaskFailed(ERR_PARAMETERS, _quoting_warnings(f"The template cannot be applied: {error}", error)) from None
        except EngineError as error:
            raise TaskFailed(ERR_SOURCE, _quoting_warnings(f"The image cannot be processed: {error}", error)) from None
        image = result.image
        extension, container, content_type = FORMATS[image.format]
        key = f"{output_prefix(task.sub_app_id, task.task_id)}{extension}"
        self.store.put(key, image.data)
        return image, extension, container, content_type, key

    def _finish(self, task: ClaimedTask, image, extension, container, content_type, key) -> bool:
        now = iso_utc(utc_now())
        shown_input = orjson.loads(task.input)
        output_config = shown_input.get("OutputConfig") or {}
        file = MediaFile(
            file_id=file_id_for(task.task_id), sub_app_id=task.sub_app_id,
            name=output_config.get("MediaName") or _default_name(task, shown_input), type=extension,
            class_id=output_config.get("ClassId", 0), source_type=SOURCE_TYPE_OUTPUT,
            source_context=task.session_context, size=image.size, container=container,
            width=image.width, height=image.height, md5=hashlib.md5(image.data).hexdigest(),
            content_type=content_type, storage_key=key, create_time=now, update_time=now,
            expire_time=output_config.get("ExpireTime") or None)
        output = {"FileInfo": {"FileId": file.file_id, "FileType": extension, "MediaName": file.name,
                               "ClassId": file.class_id, "ExpireTime": file.expire_time or "",
                               "MetaData": file.meta_data()},
                  "OutputText": ""}
        values = {"err_code": 0, "message": "SUCCESS", "progress": 100, "finish_time": now,
                  "output": orjson.dumps(output).decode()}
        return self.finish_done(task, values, file)

    def reap(self, expired: ExpiredTask) -> bool:
        """As TaskRunner's; when that ends the task (70000), an output its last attempt stored
        before it died goes too: no media row will ever name it."""
        ended = super().reap(expired)
        if ended:
            for info in self.store.list(output_prefix(expired.sub_app_id, expired.task_id)):
                self.store.delete(info.key)
        return ended

    def event_content(self, row) -> dict:
        """The task record with its template snapshot's members (DESIGN.md 6)."""
        record = task_record(row, self.public_base)
        record.update(orjson.loads(row["configure"] or "{}"))
        return {"EventType": COMPLETE_EVENT, COMPLETE_EVENT: record}


def output_prefix(sub_app_id: int, task_id: str) -> str:
    """The task's output object key but for its extension (one task, one output)."""
    return f"outputs/{sub_app_id}/{task_id}."


def _default_name(task: ClaimedTask, shown_input: dict) -> str:
    url = shown_input.get("Url")
    if url:
        stem = PurePosixPath(urlsplit(url).path).stem
        if stem:
            return stem[:64]
    return task.task_id.rsplit("-", 1)[-1][:32]


def _quoting_warnings(message: str, error: Exception) -> str:
    """``message`` with the decoder's own warnings on this image, which often say what is wrong."""
    warnings = getattr(error, "warnings", ())
    return f"{message} (decoder said: {'; '.join(warnings)})" if warnings else message
