"""What every task runner shares: finishing a task in one fenced transaction with its output media
row and its completion event, finishing it with an error, retrying after a crash, and the reaper's
decision for an expired lease (DESIGN.md section 5).

A runner subclass names its ``event_type`` and builds the event's content from a task row
(``event_content``); ``run(task, report)`` does the type's own work.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from vodimg.domain.clock import iso_utc, utc_now
from vodimg.domain.media import MediaFile
from vodimg.events import event_row, insert_event
from vodimg.queue import FINISH, ClaimedTask, ExpiredTask, TaskQueue
from vodimg.storage.db import RowInsert
from vodimg.storage.schema import media, tasks

logger = logging.getLogger("vodimg.worker")

MAX_ATTEMPTS = 3
ERR_PARAMETERS, ERR_SOURCE, ERR_INTERNAL = 40000, 60000, 70000


class TaskFailed(Exception):
    """The task finishes with ``err_code`` and this message."""

    def __init__(self, err_code: int, message: str):
        super().__init__(message)
        self.err_code = err_code


class TaskRunner:
    queue: TaskQueue
    event_type: str

    def event_content(self, row) -> dict:
        """The completion event of a finished task row (a mapping of the tasks table's columns)."""
        raise NotImplementedError

    def finish_done(self, task: ClaimedTask, values: dict, file: MediaFile) -> bool:
        """FINISH with ``values``, the media row ``file`` and the event, if the lease still holds."""
        row = {"task_id": task.task_id, "sub_app_id": task.sub_app_id, "status": FINISH, "input": task.input,
               "session_id": task.session_id, "session_context": task.session_context,
               "configure": task.configure, **values}

        inserts = (RowInsert(media, file.row()), event_row(task.sub_app_id, self.event_type, self.event_content(row)))
        if self.queue.finish(task.task_id, task.attempt, values, inserts=inserts):
            return True
        logger.warning("task %s: lease %d lost before finishing; the result is dropped", task.task_id, task.attempt)
        return False

    def finish_failed(self, task_id: str, attempt: int, err_code: int, message: str,
                      *, expired_only: bool = False) -> bool:
        values = {"err_code": err_code, "message": message, "finish_time": iso_utc(utc_now()), "output": None}

        def insert_event_row(conn) -> None:
            row = conn.execute(sa.select(tasks).where(tasks.c.task_id == task_id)).first()._mapping
            insert_event(conn, row["sub_app_id"], self.event_type, self.event_content(row))

        return self.queue.finish(task_id, attempt, values, insert_event_row, expired_only=expired_only)

    def retry(self, task: ClaimedTask, reason: str) -> bool:
        """After a crash: another attempt, or 70000 after the last (then True: it finished)."""
        if task.failures + 1 >= MAX_ATTEMPTS:
            return self.finish_failed(task.task_id, task.attempt, ERR_INTERNAL,
                                      f"Internal error: {reason}, on each of {MAX_ATTEMPTS} attempts.")
        logger.warning("task %s attempt %d: %s; trying again", task.task_id, task.attempt, reason)
        self.queue.release(task.task_id, task.attempt, failed=True)
        return False

    def reap(self, expired: ExpiredTask) -> bool:
        """An expired lease: its worker died or hangs. Another attempt, or 70000 after the last
        (then True: this call finished the task)."""
        if expired.failures + 1 >= MAX_ATTEMPTS:
            return self.finish_failed(
                expired.task_id, expired.attempt, ERR_INTERNAL,
                f"Internal error: the worker stopped answering on each of {MAX_ATTEMPTS} attempts.", expired_only=True)
        self.queue.requeue(expired)
        return False
