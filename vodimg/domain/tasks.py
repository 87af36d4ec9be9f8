"""Image tasks: submission (ProcessImageAsync), and what DescribeTaskDetail and DescribeTasks show.

Submission checks everything a person can fix before the task is queued (DESIGN.md section 5),
then inserts the task, its SessionId claim and (for Base64 input) stores the bytes, in that order:
the bytes first under a key derived from the TaskId, so a task never points at missing input, and
an input whose task was never inserted is only an orphan the sweeper removes.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

from vodimg.domain.clock import Clock, iso_utc, parse_iso, utc_now
from vodimg.domain.media import MediaService, media_url
from vodimg.domain.uploads import checked_expire_time, checked_media_type, url_media_type
from vodimg.errors import ApiError
from vodimg.objectstore import ObjectStore
from vodimg.queue import FINISH, PROCESSING, WAITING, TaskQueue, now_ms
from vodimg.storage.db import Database
from vodimg.storage.schema import task_sessions, tasks

PROCESS_IMAGE = "ProcessImageAsync"
PULL_UPLOAD = "PullUpload"
MAX_BASE64_BYTES = 4 * 1024 * 1024  # decoded size must be under this (the spec: 小于4MB)
TASK_RETENTION_MS = 3 * 24 * 3600 * 1000  # DescribeTaskDetail/DescribeTasks see 3 days
DEFAULT_LIMIT = 10
SORT_FIELDS = ("CreateTime", "FinishTime")
SORT_ORDERS = ("Asc", "Desc")


def input_key(task_id: str) -> str:
    """Where a task's Base64 input is kept."""
    return f"inputs/{task_id}"


@dataclass(frozen=True)
class TaskSettings:
    public_base: str  # the base of served file URLs
    session_window_ms: int = TASK_RETENTION_MS  # a SessionId is refused again within this


class TaskService:
    def __init__(self, db: Database, store: ObjectStore, queue: TaskQueue, media: MediaService,
                 templates, url_check, settings: TaskSettings, *, clock: Clock = utc_now):
        """``url_check(url)`` raises ``ApiError`` (InvalidParameterValue.Url) for a URL the
        service may not fetch; ``templates`` gives ``configure_for_task``."""
        self._db = db
        self._store = store
        self._queue = queue
        self._media = media
        self._templates = templates
        self._url_check = url_check
        self.settings = settings
        self._clock = clock

    # -- ProcessImageAsync ----------------------------------------------------------------------

    def submit_image_task(self, sub_app_id: int, params: dict) -> str:
        source, shown_input, input_file_id, data = self._source(sub_app_id, params)
        task_input = params.get("ImageTaskInput") or {}
        if "Definition" not in task_input:
            raise ApiError("MissingParameter", "The request is missing ImageTaskInput.Definition.")
        configure = self._templates.configure_for_task(sub_app_id, task_input["Definition"])
        output_config = _checked_output_config(params.get("OutputConfig") or {}, self._clock())
        shown_input["ImageTaskInput"] = task_input
        shown_input["OutputConfig"] = output_config
        task_id = f"{sub_app_id}-{PROCESS_IMAGE}-{secrets.token_hex(16)}t"
        if data is not None:
            self._store.put(input_key(task_id), data)
            source["key"] = input_key(task_id)
        self._insert(task_id, sub_app_id, PROCESS_IMAGE, params, source=source, shown_input=shown_input,
                     input_file_id=input_file_id, configure=configure)
        return task_id

    def _source(self, sub_app_id: int, params: dict) -> tuple[dict, dict, str | None, bytes | None]:
        """(source for the worker, Input as shown, FileId filter value, Base64 bytes)."""
        given = [name for name in ("FileId", "Url", "Base64") if params.get(name)]
        if not given:
            raise ApiError("MissingParameter", "Give the image to process: one of FileId, Url or Base64.")
        if len(given) > 1:
            raise ApiError("InvalidParameterValue", f"Give only one of FileId, Url or Base64, not {' and '.join(given)}.")
        if given[0] == "FileId":
            file_id = params["FileId"]
            if self._media.get(sub_app_id, file_id) is None:
                raise ApiError("InvalidParameterValue.FileId", f"FileId {file_id!r} is not a media file of this application.")
            return {"kind": "media", "file_id": file_id}, {"FileId": file_id, "Url": ""}, file_id, None
        if given[0] == "Url":
            self._url_check(params["Url"])
            return {"kind": "url", "url": params["Url"]}, {"FileId": "", "Url": params["Url"]}, None, None
        return {"kind": "object"}, {"FileId": "", "Url": ""}, None, _decoded_base64(params["Base64"])

    def _insert(self, task_id: str, sub_app_id: int, task_type: str, params: dict, *, source: dict,
                shown_input: dict, input_file_id: str | None, configure: dict | None) -> None:
        created = self._clock()
        created_ms = int(created.timestamp() * 1000)
        session_id = params.get("SessionId") or ""
        with self._db.write() as conn:
            if session_id:
                self._claim_session(conn, sub_app_id, session_id, task_id, created_ms)
            conn.execute(tasks.insert().values(
                task_id=task_id, sub_app_id=sub_app_id, task_type=task_type, status=WAITING,
                priority=params.get("TasksPriority", 0), input_file_id=input_file_id,
                source=orjson.dumps(source).decode(), input=orjson.dumps(shown_input).decode(),
                configure=None if configure is None else orjson.dumps(configure).decode(),
                session_id=session_id, session_context=params.get("SessionContext") or "",
                ext_info=params.get("ExtInfo") or "", progress=0, err_code=0, message="", output=None,
                attempt=0, failures=0, create_time=iso_utc(created), created_ms=created_ms))
        self._queue.notify()

    def _claim_session(self, conn, sub_app_id: int, session_id: str, task_id: str, created_ms: int) -> None:
        """Take the SessionId for this task; the primary key refuses a second holder at once."""
        conn.execute(task_sessions.delete().where(
            task_sessions.c.sub_app_id == sub_app_id, task_sessions.c.session_id == session_id,
            task_sessions.c.created_ms < created_ms - self.settings.session_window_ms))
        try:
            with conn.begin_nested():
                conn.execute(task_sessions.insert().values(
                    sub_app_id=sub_app_id, session_id=session_id, task_id=task_id, created_ms=created_ms))
        except sa.exc.IntegrityError:
            days = self.settings.session_window_ms / 86_400_000
            raise ApiError("InvalidParameterValue.SessionId",
                           f"SessionId {session_id!r} was already used by a request of the last {days:g} days.") from None

    # -- PullUpload -----------------------------------------------------------------------------------

    def submit_pull_upload(self, sub_app_id: int, params: dict) -> str:
        """Queue a PullUpload task (vodimg/worker/pull_upload.py fetches and stores the file)."""
        url = params["MediaUrl"]
        try:
            self._url_check(url)
        except ApiError as refused:
            raise ApiError("InvalidParameterValue.MediaUrl", refused.message.replace("Url", "MediaUrl", 1)) from None
        media_type = checked_media_type(params["MediaType"], "MediaType") if params.get("MediaType") else url_media_type(url)
        class_id = params.get("ClassId", 0)
        if class_id < 0:
            raise ApiError("InvalidParameterValue.ClassId", f"ClassId must be 0 or more; got {class_id}.")
        source = {"kind": "pull", "url": url, "media_type": media_type, "media_name": params.get("MediaName") or "",
                  "class_id": class_id, "expire_time": checked_expire_time(params.get("ExpireTime"), self._clock()),
                  "source_context": params.get("SourceContext") or ""}
        task_id = f"{sub_app_id}-{PULL_UPLOAD}-{secrets.token_hex(16)}"
        self._insert(task_id, sub_app_id, PULL_UPLOAD, params, source=source, shown_input={"MediaUrl": url},
                     input_file_id=None, configure=None)
        return task_id

    # -- DescribeTaskDetail, DescribeTasks --------------------------------------------------------

    def detail(self, sub_app_id: int, task_id: str) -> dict:
        with self._db.read() as conn:
            row = conn.execute(sa.select(tasks).where(
                tasks.c.task_id == task_id, tasks.c.sub_app_id == sub_app_id,
                tasks.c.created_ms >= now_ms() - TASK_RETENTION_MS)).first()
        if row is None:
            raise ApiError("InvalidParameterValue.TaskId",
                           f"TaskId {task_id!r} is not a task of this application of the last 3 days.")
        return describe_task(row._mapping, self.settings.public_base)

    def list(self, sub_app_id: int, params: dict) -> dict:
        sort = params.get("Sort") or {"Field": "CreateTime", "Order": "Desc"}
        if sort.get("Field") not in SORT_FIELDS or sort.get("Order") not in SORT_ORDERS:
            raise ApiError("InvalidParameterValue.Sort",
                           f"Sort.Field must be one of {', '.join(SORT_FIELDS)} and Sort.Order one of "
                           f"{', '.join(SORT_ORDERS)}; got {sort!r}.")
        by_finish, descending = sort["Field"] == "FinishTime", sort["Order"] == "Desc"
        query = sa.select(tasks).where(tasks.c.sub_app_id == sub_app_id,
                                       tasks.c.created_ms >= now_ms() - TASK_RETENTION_MS)
        if params.get("Status"):
            query = query.where(tasks.c.status == params["Status"])
        if params.get("FileId"):
            query = query.where(tasks.c.input_file_id == params["FileId"])
        for name, column in (("CreateTime", tasks.c.create_time), ("FinishTime", tasks.c.finish_time)):
            query = _within(query, column, params.get(name), name)
        keys = (tasks.c.finish_time, tasks.c.seq) if by_finish else (tasks.c.seq,)
        if by_finish:
            query = query.where(tasks.c.finish_time.is_not(None))
        token = params.get("ScrollToken")
        if token:
            query = query.where(_after_token(keys, token, sort, descending))
        limit = params.get("Limit", DEFAULT_LIMIT)
        order = [key.desc() if descending else key.asc() for key in keys]
        with self._db.read() as conn:
            rows = conn.execute(query.order_by(*order).limit(limit + 1)).all()
        page = [row._mapping for row in rows[:limit]]
        next_token = _token(page[-1], by_finish, sort) if len(rows) > limit else ""
        return {"TaskSet": [_simple(row) for row in page], "ScrollToken": next_token}


# -- checks -----------------------------------------------------------------------------------------

def _decoded_base64(text: str) -> bytes:
    if text.lstrip().lower().startswith("data:"):
        raise ApiError("InvalidParameterValue.ImageDecodeError",
                       "Base64 must be the bare Base64 string, without a data: prefix such as data:image/png;base64,.")
    if len(text) > (MAX_BASE64_BYTES // 3 + 1) * 4 + 4:  # refuse before decoding
        raise ApiError("InvalidParameterValue", "Base64: the image must be smaller than 4 MB.")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("InvalidParameterValue.ImageDecodeError", "Base64 is not valid Base64.") from None
    if len(data) >= MAX_BASE64_BYTES:
        raise ApiError("InvalidParameterValue", f"Base64: the image must be smaller than 4 MB; got {len(data)} bytes.")
    return data


def _checked_output_config(config: dict, now) -> dict:
    checked = {"MediaName": config.get("MediaName", ""), "ClassId": config.get("ClassId", 0), "ExpireTime": ""}
    if checked["ClassId"] < 0:
        raise ApiError("InvalidParameterValue.ClassId", f"OutputConfig.ClassId must be 0 or more; got {checked['ClassId']}.")
    expire = config.get("ExpireTime")
    if expire:
        moment = parse_iso(expire)
        if moment is None:
            raise ApiError("InvalidParameterValue.ExpireTime",
                           f"OutputConfig.ExpireTime must be an ISO 8601 time such as 2026-01-20T03:02:33Z; got {expire!r}.")
        if moment <= now:
            raise ApiError("InvalidParameterValue.ExpireTime", f"OutputConfig.ExpireTime {expire!r} is not in the future.")
        checked["ExpireTime"] = iso_utc(moment)
    return checked


def _within(query, column, time_range: dict | None, name: str):
    if not time_range:
        return query
    for bound, compare in (("After", column.__ge__), ("Before", column.__lt__)):
        if time_range.get(bound):
            moment = parse_iso(time_range[bound])
            if moment is None:
                raise ApiError("InvalidParameterValue",
                               f"{name}.{bound} must be an ISO 8601 time such as 2026-01-20T03:02:33Z.")
            query = query.where(compare(iso_utc(moment)))
    return query


def _token(row, by_finish: bool, sort: dict) -> str:
    parts = [sort["Field"], sort["Order"], row["finish_time"] if by_finish else "", str(row["seq"])]
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def _after_token(keys, token: str, sort: dict, descending: bool):
    try:
        field, order, finish_time, seq = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("|")
        seq = int(seq)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError("InvalidParameterValue", f"ScrollToken {token!r} is not one this service gave.") from None
    if (field, order) != (sort["Field"], sort["Order"]):
        raise ApiError("InvalidParameterValue", "ScrollToken belongs to another Sort; page with the same Sort.")
    values = (finish_time, seq) if len(keys) == 2 else (seq,)
    return (sa.tuple_(*keys) < sa.tuple_(*values)) if descending else (sa.tuple_(*keys) > sa.tuple_(*values))


# -- what the API shows -------------------------------------------------------------------------------

def describe_task(row, public_base: str) -> dict:
    """DescribeTaskDetail's answer (without RequestId) for a task row."""
    shown = {"TaskType": row["task_type"], "Status": row["status"], "CreateTime": row["create_time"],
             "BeginProcessTime": row["begin_process_time"] or "", "FinishTime": row["finish_time"] or "",
             "PullUploadTask": None, "ProcessImageAsyncTask": None}
    record = pull_task_record if row["task_type"] == PULL_UPLOAD else task_record
    shown[f"{row['task_type']}Task"] = record(row, public_base)
    return shown


def pull_task_record(row, public_base: str) -> dict:
    """The ``PullUploadTask`` member (as DescribeTaskDetail and the PullComplete event show it)."""
    output = orjson.loads(row["output"]) if row["output"] else None
    basic_info, file_url = None, ""
    if output is not None:
        file_url = media_url(public_base, row["sub_app_id"], output["FileId"], output["MediaName"], output["FileType"])
        basic_info = {**output["MediaBasicInfo"], "MediaUrl": file_url}
    return {
        "TaskId": row["task_id"], "Status": FINISH if row["status"] == FINISH else PROCESSING,
        "ErrCode": row["err_code"], "Message": row["message"], "Progress": row["progress"],
        "FileId": output["FileId"] if output else "", "MediaBasicInfo": basic_info,
        "MetaData": output["MetaData"] if output else None, "FileUrl": file_url,
        "ProcedureTaskId": "", "ReviewAudioVideoTaskId": "",
        "SessionContext": row["session_context"], "SessionId": row["session_id"],
    }


def task_record(row, public_base: str) -> dict:
    """The ``ProcessImageAsyncTask`` member (as DescribeTaskDetail and the completion event show it)."""
    return {
        "TaskId": row["task_id"],
        # The member documents PROCESSING and FINISH only: a waiting task is shown as PROCESSING.
        "Status": FINISH if row["status"] == FINISH else PROCESSING,
        "ErrCode": row["err_code"], "Message": row["message"], "Progress": row["progress"],
        "Input": orjson.loads(row["input"]),
        "Output": _output(row, public_base),
        "SessionId": row["session_id"], "SessionContext": row["session_context"],
    }


def _output(row, public_base: str) -> dict | None:
    if row["output"] is None:
        return None
    output = orjson.loads(row["output"])
    info = output["FileInfo"]
    info["FileUrl"] = media_url(public_base, row["sub_app_id"], info["FileId"], info["MediaName"], info["FileType"])
    return output


def _simple(row) -> dict:
    return {"TaskId": row["task_id"], "Status": row["status"], "TaskType": row["task_type"],
            "FileId": row["input_file_id"] or "", "CreateTime": row["create_time"],
            "BeginProcessTime": row["begin_process_time"] or "", "FinishTime": row["finish_time"] or "",
            "SessionId": row["session_id"], "SessionContext": row["session_context"]}
