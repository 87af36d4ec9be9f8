"""The worker: slots that claim and run tasks, a lease keeper, and the maintenance loop.

- Each slot is a thread that claims a task, runs it with the runner of its type (the engine itself runs in a child process of
  the engine pool, so a slot only waits) and claims the next. An idle slot waits for the queue's
  wake-up (a task submitted in this process) or polls every ``poll_seconds`` (other processes).
- The lease keeper renews every running task's lease and writes its progress, at most twice a
  second and only when the progress moved or the lease is a third through.
- Maintenance (in one thread): the reaper every few seconds, the sweeper every minute.
- ``stop(grace)``: stop claiming, let running tasks finish within ``grace`` seconds, then give the
  rest back to the queue (WAITING, no failure counted) and end.
- ``alongside``: loops that run with the worker (the PUSH event delivery), started and stopped
  with it (``start()``, ``stop(grace)``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vodimg.domain.clock import iso_utc, utc_now
from vodimg.queue import ClaimedTask, TaskQueue

logger = logging.getLogger("vodimg.worker")

ALONGSIDE_GRACE = 10.0  # seconds the loops alongside get to finish what is in flight
PROGRESS_INTERVAL = 0.5  # seconds between progress writes of one task (at most two a second)


@dataclass
class _Running:
    task: ClaimedTask
    progress: int = 0
    written: int = 0
    renewed: float = field(default_factory=time.monotonic)


class Worker:
    def __init__(self, queue: TaskQueue, runners: dict, *, slots: int, poll_seconds: float = 0.2,
                 maintenance: Callable[[], None] | None = None, maintenance_seconds: float = 1.0,
                 alongside: tuple = ()):
        self.queue = queue
        self.runners = runners  # task type -> its runner (``run(task, report)``)
        self.slots = slots
        self.poll_seconds = poll_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._maintenance = maintenance
        self._maintenance_seconds = maintenance_seconds
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # no more claims
        self._closed = threading.Event()  # leases need no more renewing
        self._threads: list[threading.Thread] = []
        self._alongside = alongside

    def start(self) -> None:
        for index in range(self.slots):
            self._spawn(self._slot, f"vodimg-slot-{index}")
        self._spawn(self._keep_leases, "vodimg-leases")
        if self._maintenance is not None:
            self._spawn(self._maintain, "vodimg-maintenance")
        for loop in self._alongside:
            loop.start()
        logger.info("worker %s: %d slots", self.name, self.slots)

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def stop(self, grace: float) -> None:
        """Drain: no new claims; running tasks get ``grace`` seconds, the rest go back WAITING."""
        self._stopping.set()
        self.queue.notify()
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left = [running.task for running in self._running.values()]
        for task in left:
            if self.queue.release(task.task_id, task.attempt, failed=False):
                logger.info("task %s given back to the queue (still running at shutdown)", task.task_id)
        self._closed.set()
        for loop in self._alongside:  # after the tasks: events of tasks finished while draining go out
            loop.stop(min(grace, ALONGSIDE_GRACE))

    # -- slots ----------------------------------------------------------------------------------

    def _slot(self) -> None:
        seen = 0
        while not self._stopping.is_set():
            try:
                task = self.queue.claim(self.name, iso_utc(utc_now()), tuple(self.runners))
            except Exception:  # noqa: BLE001 - the database may be restarting: wait and retry
                logger.exception("claiming a task failed; retrying")
                self._stopping.wait(1.0)
                continue
            if task is None:
                seen = self.queue.wait(seen, self.poll_seconds)
                continue
            self._run(task)

    def _run(self, task: ClaimedTask) -> None:
        running = _Running(task)
        with self._lock:
            self._running[task.task_id] = running

        def report(progress: int) -> None:
            running.progress = max(running.progress, progress)

        try:
            self.runners[task.task_type].run(task, report)
        except Exception:  # noqa: BLE001 - the lease runs out and the reaper retries it
            logger.exception("task %s attempt %d failed unexpectedly", task.task_id, task.attempt)
        finally:
            with self._lock:
                self._running.pop(task.task_id, None)

    # -- leases and maintenance -------------------------------------------------------------------

    def _keep_leases(self) -> None:
        renew_every = self.queue.lease_ms / 3000
        while not self._closed.wait(PROGRESS_INTERVAL):
            with self._lock:
                running = list(self._running.values())
            for item in running:
                due = time.monotonic() - item.renewed >= renew_every
                if item.progress == item.written and not due:
                    continue
                try:
                    self.queue.renew(item.task.task_id, item.task.attempt, item.progress)
                except Exception:  # noqa: BLE001 - the next round tries again
                    logger.exception("renewing the lease of %s failed", item.task.task_id)
                    continue
                item.written, item.renewed = item.progress, time.monotonic()

    def _maintain(self) -> None:
        while not self._stopping.wait(self._maintenance_seconds):
            try:
                self._maintenance()
            except Exception:  # noqa: BLE001 - maintenance is retried on the next round
                logger.exception("maintenance failed")
