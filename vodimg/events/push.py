"""PUSH delivery: events of applications in PUSH mode are POSTed to their NotificationUrl
(DESIGN.md section 6), by a loop that runs on the worker side (``vodimg serve``'s in-process
worker and ``vodimg worker``), never in a request.

- Claim: one transaction leases due events of PUSH applications (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL): a fresh token in ``handle``, ``ready_at_ms`` moved past the post's timeout, so no
  other process posts the same event meanwhile; a process that dies mid-post leaves a lease that
  runs out, and the event is posted again (at least once).
- Post: the EventContent without EventHandle, plus ``T`` (Unix seconds, 10 minutes ahead) and
  ``Sign`` = MD5(SignKey + T) when the application has a SignKey; through the URL guard, at most
  ``concurrency`` posts at once, each within the timeout (10 s), redirects not followed.
- A 2xx answer removes the event (conditional on the lease token). Anything else (3xx, 4xx, 5xx,
  a refused address, a closed connection, a timeout) puts it back with exponential backoff: 5 s,
  10 s, 20 s ... at most 10 minutes apart, until it is delivered or the sweeper removes it after
  4 days.
- Wake-up: at once for events of PUSH applications committed in this process or announced by
  PostgreSQL's NOTIFY (``SIGNAL``), else every poll interval. Which applications are in PUSH
  mode is read again at most once a poll interval, so the events of PULL applications (most of
  a busy worker's) wake nobody, and an application switched to PUSH is served from the next poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

from vodimg.events import SIGNAL, listen_for_events
from vodimg.events.service import PUSH, event_content
from vodimg.events.signal import ANY_APPLICATION, EventSignal
from vodimg.netguard import FetchFailed, UrlPolicy, UrlRefused, post_json_async
from vodimg.queue import now_ms
from vodimg.storage.db import Database
from vodimg.storage.schema import event_config, events

logger = logging.getLogger("vodimg.events")

SIGN_VALID_SECONDS = 600  # T: VOD's signatures expire after 10 minutes
LEASE_MARGIN_MS = 5_000  # a post's lease outlasts its timeout by this much
MAX_BACKOFF_EXPONENT = 20


@dataclass(frozen=True)
class PushSettings:
    timeout_seconds: float = 10.0
    first_retry_seconds: float = 5.0
    max_retry_seconds: float = 600.0
    concurrency: int = 16
    poll_seconds: float = 0.5


@dataclass(frozen=True)
class _Delivery:
    seq: int
    token: str
    attempts: int
    content: str
    url: str
    sign_key: str


def signed_body(content: str, sign_key: str, now: float) -> bytes:
    """The POST body of an event: its EventContent, plus T and Sign with a SignKey."""
    body = event_content(content)
    if sign_key:
        expiry = int(now) + SIGN_VALID_SECONDS
        body["T"] = expiry
        body["Sign"] = hashlib.md5(f"{sign_key}{expiry}".encode()).hexdigest()
    return orjson.dumps(body)


def retry_delay(settings: PushSettings, attempts: int) -> float:
    """Seconds before the next post after ``attempts`` failed ones: doubling, capped."""
    exponent = min(max(attempts - 1, 0), MAX_BACKOFF_EXPONENT)
    return min(settings.max_retry_seconds, settings.first_retry_seconds * 2 ** exponent)


def _lease_statement() -> sa.Executable:
    """Lease the due events of PUSH applications (bind parameters: now, token, lease_until,
    limit): a fresh handle (token + seq), ready again after the lease, one more attempt."""
    due = (sa.select(events.c.seq)
           .select_from(events.join(event_config, event_config.c.sub_app_id == events.c.sub_app_id))
           .where(event_config.c.mode == PUSH, event_config.c.notification_url != "",
                  events.c.ready_at_ms <= sa.bindparam("now", type_=sa.BigInteger))
           .order_by(events.c.ready_at_ms, events.c.seq).limit(sa.bindparam("limit", type_=sa.Integer))
           .with_for_update(skip_locked=True, of=events).correlate(None))
    return (events.update().where(events.c.seq.in_(due.scalar_subquery()))
            .values(handle=sa.bindparam("token", type_=sa.String) + sa.cast(events.c.seq, sa.String),
                    ready_at_ms=sa.bindparam("lease_until", type_=sa.BigInteger), attempts=events.c.attempts + 1)
            .returning(events.c.seq, events.c.sub_app_id, events.c.handle, events.c.attempts, events.c.content))


class PushDelivery:
    def __init__(self, db: Database, url_policy: UrlPolicy, settings: PushSettings = PushSettings(),
                 signal: EventSignal = SIGNAL):
        self._db = db
        self._url_policy = url_policy
        self.settings = settings
        self._signal = signal
        listen_for_events(db, signal)
        self._lease_ms = int(settings.timeout_seconds * 1000) + LEASE_MARGIN_MS
        self._lease = db.compile(_lease_statement())
        self._push_applications = db.compile(sa.select(event_config.c.sub_app_id).where(
            event_config.c.mode == PUSH, event_config.c.notification_url != ""))
        self._pushing: frozenset[int] = frozenset()  # the PUSH applications, as last read
        self._pushing_read = float("-inf")  # time.monotonic() of that read
        self.claims = 0  # claim statements sent (tests)
        self._stopping = threading.Event()
        self._grace = 0.0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._database_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vodimg-push-db")
        self.delivered = 0  # counters, for logs and tests
        self.failed = 0

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        started = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(started,), name="vodimg-push", daemon=True)
        self._thread.start()
        started.wait()

    def stop(self, grace: float) -> None:
        """Stop claiming; posts in flight get ``grace`` seconds (their leases run out otherwise)."""
        self._grace = grace
        self._stopping.set()
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(grace + 1.0)
        self._database_threads.shutdown(wait=False)

    def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        started.set()
        try:
            self._loop.run_until_complete(self._run())
        finally:
            self._loop.close()

    # -- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        in_flight: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()

        def finished(task: asyncio.Task) -> None:
            in_flight.discard(task)
            self._wake.set()

        while not self._stopping.is_set():
            self._wake.clear()  # before claiming: a post that ends from here on wakes the idle wait
            seen = self._signal.generations()  # before claiming: no wake-up is lost
            free = self.settings.concurrency - len(in_flight)
            claimed = []
            if free > 0:
                try:
                    claimed = await loop.run_in_executor(self._database_threads, self._claim, free)
                except Exception:  # noqa: BLE001 - the database may be restarting: try again later
                    logger.exception("claiming events to push failed; retrying")
            for delivery in claimed:
                task = asyncio.create_task(self._deliver(delivery))
                in_flight.add(task)
                task.add_done_callback(finished)
            if free > 0 and len(claimed) == free:
                continue  # there may be more due
            await self._idle(seen)
        if in_flight:  # posts in flight may finish within the grace; the others' leases run out
            _done, unfinished = await asyncio.wait(in_flight, timeout=self._grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    async def _idle(self, seen: dict[int | None, int]) -> None:
        """Until an event of a PUSH application is committed (``seen``: the generations before
        the claim), a post ends, or the poll interval passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.poll_seconds
        while (remaining := deadline - loop.time()) > 0:
            signal = asyncio.ensure_future(self._signal.wait(ANY_APPLICATION, seen.get(ANY_APPLICATION, 0), remaining))
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait((signal, woken), return_when=asyncio.FIRST_COMPLETED)
            for pending in (signal, woken):
                pending.cancel()
            await asyncio.gather(signal, woken, return_exceptions=True)
            if (woken.done() and not woken.cancelled()) or signal.cancelled() or not signal.result():
                return  # a post ended, or the poll interval passed
            if any(self._signal.generation(app) != seen.get(app, 0) for app in self._pushing):
                return
            seen[ANY_APPLICATION] = self._signal.generation(ANY_APPLICATION)  # a PULL application's: wait on

    async def _deliver(self, delivery: _Delivery) -> None:
        body = signed_body(delivery.content, delivery.sign_key, time.time())
        try:
            status = await post_json_async(delivery.url, body, self._url_policy, self.settings.timeout_seconds)
            error = None if 200 <= status < 300 else f"{delivery.url}: HTTP {status}"
        except (UrlRefused, FetchFailed) as failure:
            error = str(failure)
        except Exception as failure:  # noqa: BLE001 - any other failure is retried too
            logger.exception("posting event %d failed unexpectedly", delivery.seq)
            error = f"{type(failure).__name__}: {failure}"
        loop = asyncio.get_running_loop()
        try:
            if error is None:
                await loop.run_in_executor(self._database_threads, self._delivered, delivery)
            else:
                await loop.run_in_executor(self._database_threads, self._failed, delivery, error)
        except Exception:  # noqa: BLE001 - the lease runs out and the event is posted again
            logger.exception("recording the delivery of event %d failed", delivery.seq)

    # -- the database -------------------------------------------------------------------------------

    def _claim(self, limit: int) -> list[_Delivery]:
        """Lease up to ``limit`` due events of PUSH applications. Runs on every wake-up, also for
        the events of PULL applications, so it is one statement compiled once, in one round trip."""
        now = now_ms()
        params = {"now": now, "token": secrets.token_hex(16), "lease_until": now + self._lease_ms, "limit": limit}
        if time.monotonic() - self._pushing_read >= self.settings.poll_seconds:
            with self._db.cursor() as cursor:
                self._pushing = frozenset(row[0] for row in self._push_applications.run(cursor).fetchall())
            self._pushing_read = time.monotonic()
        with self._db.single_write() as cursor:
            rows = self._lease.run(cursor, params).fetchall()
        self.claims += 1
        if not rows:
            return []
        with self._db.read() as conn:
            targets = {row.sub_app_id: (row.notification_url, row.sign_key) for row in conn.execute(
                sa.select(event_config.c.sub_app_id, event_config.c.notification_url, event_config.c.sign_key)
                .where(event_config.c.sub_app_id.in_({sub_app_id for _, sub_app_id, *_ in rows})))}
        return [_Delivery(seq, handle, attempts, content, *targets[sub_app_id])
                for seq, sub_app_id, handle, attempts, content in sorted(rows)]

    def _held(self, delivery: _Delivery):
        return sa.and_(events.c.seq == delivery.seq, events.c.handle == delivery.token)

    def _delivered(self, delivery: _Delivery) -> None:
        with self._db.write() as conn:
            conn.execute(events.delete().where(self._held(delivery)))
        self.delivered += 1

    def _failed(self, delivery: _Delivery, error: str) -> None:
        delay = retry_delay(self.settings, delivery.attempts)
        with self._db.write() as conn:
            conn.execute(events.update().where(self._held(delivery)).values(
                handle=None, ready_at_ms=now_ms() + int(delay * 1000), last_error=error[:1000]))
        self.failed += 1
        logger.warning("event %d not delivered (attempt %d): %s; next attempt in %g s",
                       delivery.seq, delivery.attempts, error, delay)
