"""The reaper and the sweeper, run by every worker process (each pass is safe to run anywhere at
once: every change is a conditional statement).

- Reaper (every few seconds): tasks whose lease ran out go back to WAITING, or finish with
  ErrCode 70000 after the last attempt.
- Sweeper (every minute): finished tasks older than 3 days and their stored input; media files past
  their ExpireTime (bytes first, then the row, so a crash in between leaves a row the next pass
  removes, never bytes nobody can find); SessionIds past their window; events neither confirmed
  nor delivered within 4 days; a crashed writer's temporary files; upload sessions past their end
  (ApplyUpload's hour) with what they left under ``uploads/<session>/``: objects never committed,
  abandoned multipart uploads and their parts (objects first, then the rows, for the same reason);
  Base64 inputs older than an hour whose task does not exist (the API process stored the bytes,
  then died before its transaction inserted the task).
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from vodimg.domain.clock import iso_utc, utc_now
from vodimg.domain.tasks import TASK_RETENTION_MS, input_key
from vodimg.queue import FINISH, TaskQueue, now_ms
from vodimg.storage.db import Database
from vodimg.events import EVENT_RETENTION_MS
from vodimg.storage.schema import (
    events, media, multipart_parts, multipart_uploads, task_sessions, tasks, upload_sessions,
)

logger = logging.getLogger("vodimg.worker")

REAP_SECONDS = 5.0
SWEEP_SECONDS = 60.0
SWEEP_BATCH = 500
UPLOAD_GRACE_MS = 60_000  # a request signed just before its session ended may still be streaming
ORPHAN_INPUT_SECONDS = 3600.0  # far beyond any submission's time between storing input and commit


class Maintenance:
    def __init__(self, db: Database, store, queue: TaskQueue, runners: dict, *, session_window_ms: int,
                 reap_seconds: float = REAP_SECONDS, sweep_seconds: float = SWEEP_SECONDS):
        self._db = db
        self._store = store
        self._queue = queue
        self._runners = runners  # task type -> runner with ``reap(expired)``
        self._session_window_ms = session_window_ms
        self._reap_seconds = reap_seconds
        self._sweep_seconds = sweep_seconds
        self._next_reap = self._next_sweep = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now >= self._next_reap:
            self._next_reap = now + self._reap_seconds
            self.reap()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_seconds
            self.sweep()

    def reap(self) -> int:
        expired = self._queue.expired()
        for task in expired:
            logger.warning("task %s: the lease of attempt %d ran out", task.task_id, task.attempt)
            runner = self._runners.get(task.task_type)
            if runner is None:  # a type this process does not run: only requeue it
                self._queue.requeue(task)
            else:
                runner.reap(task)
        return len(expired)

    def sweep(self) -> dict[str, int]:
        done = {"tasks": self._sweep_tasks(), "media": self._sweep_media(), "uploads": self._sweep_uploads(),
                "inputs": self._sweep_orphan_inputs()}
        with self._db.write() as conn:
            done["sessions"] = conn.execute(task_sessions.delete().where(
                task_sessions.c.created_ms < now_ms() - self._session_window_ms)).rowcount
            done["events"] = conn.execute(events.delete().where(
                events.c.created_ms < now_ms() - EVENT_RETENTION_MS)).rowcount
        cleaner = getattr(self._store, "remove_stale_temporaries", None)
        if cleaner is not None:
            cleaner()
        if any(done.values()):
            logger.info("sweeper removed %s", done)
        return done

    def _sweep_tasks(self) -> int:
        with self._db.read() as conn:
            old = conn.execute(sa.select(tasks.c.task_id, tasks.c.source).where(
                tasks.c.status == FINISH, tasks.c.created_ms < now_ms() - TASK_RETENTION_MS)
                .limit(SWEEP_BATCH)).all()
        for task_id, source in old:
            if '"object"' in source:
                self._store.delete(input_key(task_id))
        if old:
            with self._db.write() as conn:
                conn.execute(tasks.delete().where(tasks.c.task_id.in_([row[0] for row in old])))
        return len(old)

    def _sweep_orphan_inputs(self, older_than: float = ORPHAN_INPUT_SECONDS) -> int:
        """Delete stored Base64 inputs (``inputs/<TaskId>``) no task will read again: those of a
        FINISH task (a worker killed between the FINISH and deleting the input leaves one), and
        those older than ``older_than`` seconds whose task does not exist (an API process killed
        between storing the input and committing the task). Inputs exist only while their task
        runs, so the list is short."""
        if self._store is None:  # a maintenance of the database alone (tests)
            return 0
        prefix = input_key("")
        stored = {info.key[len(prefix):]: info for info in self._store.list(prefix)}
        if not stored:
            return 0
        with self._db.read() as conn:
            status = dict(conn.execute(sa.select(tasks.c.task_id, tasks.c.status)
                                       .where(tasks.c.task_id.in_(list(stored)))).all())
        cutoff = time.time() - older_than
        unread = [info.key for task_id, info in stored.items()
                  if status.get(task_id) == FINISH or (task_id not in status and info.modified < cutoff)]
        for key in unread:
            self._store.delete(key)
        return len(unread)

    def _sweep_media(self) -> int:
        with self._db.read() as conn:
            expired = conn.execute(sa.select(media.c.file_id, media.c.storage_key).where(
                media.c.expire_time.is_not(None), media.c.expire_time <= iso_utc(utc_now()))
                .limit(SWEEP_BATCH)).all()
        for _file_id, key in expired:
            self._store.delete(key)
        if expired:
            with self._db.write() as conn:
                conn.execute(media.delete().where(media.c.file_id.in_([row[0] for row in expired])))
        return len(expired)

    def _sweep_uploads(self) -> int:
        """Upload sessions past their end: everything under their prefix but a committed file's bytes."""
        with self._db.read() as conn:
            ended = conn.execute(sa.select(upload_sessions.c.session_id, upload_sessions.c.object_key,
                                           upload_sessions.c.file_id).where(
                upload_sessions.c.expires_ms < now_ms() - UPLOAD_GRACE_MS).limit(SWEEP_BATCH)).all()
        for session_id, object_key, file_id in ended:
            keep = object_key if file_id is not None else None
            for item in list(self._store.list(f"uploads/{session_id}/")):
                if item.key != keep:
                    self._store.delete(item.key)
        if ended:
            ids = [row[0] for row in ended]
            with self._db.write() as conn:
                uploads = sa.select(multipart_uploads.c.upload_id).where(multipart_uploads.c.session_id.in_(ids))
                conn.execute(multipart_parts.delete().where(multipart_parts.c.upload_id.in_(uploads)))
                conn.execute(multipart_uploads.delete().where(multipart_uploads.c.session_id.in_(ids)))
                conn.execute(upload_sessions.delete().where(upload_sessions.c.session_id.in_(ids)))
        return len(ended)
