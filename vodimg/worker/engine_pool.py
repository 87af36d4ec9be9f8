"""The image engine in long-lived child processes, so that a crash, a hang or a memory blow-up
of one image in native code (codecs, ncnn, onnxruntime) kills only a child (DESIGN.md 5 and 9).

    with EnginePool(processes=2) as pool:
        result = pool.run(data, configure, progress=print)   # EngineResult(image, warnings)

- Children are started with "spawn", warm up their imports, and are reused image after image
  (models a step loads stay loaded). One that dies or is killed is replaced at once.
- The time limit (``Limits.max_seconds``) runs from the moment the image is sent: the engine's
  own deadline checks get ``KILL_GRACE_SECONDS`` more, then the child is killed (SIGKILL) and
  ``ProcessingTimeout`` raised, even while native code decodes.
- The memory limit: the child's resident memory is read every ``MEMORY_POLL_SECONDS`` while it
  works (Linux ``/proc``); over the limit it is killed and ``MemoryLimitExceeded`` raised.
- Children die with the parent, even after kill -9 (PR_SET_PDEATHSIG, and a fallback check),
  and ignore SIGINT and SIGTERM: the parent decides when they stop.
- What native code prints on stderr while it works on an image comes back as that image's
  ``warnings`` (on the result, or on the EngineError raised).
- ``progress(fraction)`` is called in the thread that called ``run``.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import multiprocessing
import multiprocessing.util  # registers its exit handler now: ours, registered later, runs first
import os
import signal
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_readable
from typing import Callable

from vodimg.engine import errors as engine_errors
from vodimg.engine.errors import EngineError, LimitExceeded, ProcessingTimeout
from vodimg.engine.limits import Limits
from vodimg.engine.pipeline import ProcessedImage
from vodimg.worker import _engine_child

KILL_GRACE_SECONDS = 0.25  # after the time limit, before SIGKILL: the engine's own check goes first
MEMORY_POLL_SECONDS = 0.05
START_TIMEOUT_SECONDS = 120.0  # importing numpy, OpenCV and Pillow: seconds on a loaded machine
RECYCLE_MEMORY_FRACTION = 0.5  # a child left holding more than this share of the limit is replaced
MAX_STDERR_FILE_BYTES = 16 * 1024 * 1024  # a child printing more on one image is killed
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MIB = 1024 * 1024
logger = logging.getLogger(__name__)


class EngineCrashed(EngineError):
    """The child died unexpectedly (signal or exit) while on this image: retryable."""


class PoolClosed(EngineCrashed):
    """The pool was closed before or while this image was processed: retryable elsewhere."""


class EngineInternalError(EngineCrashed):
    """The engine raised an unexpected exception (a bug, not the image's fault): retryable.
    ``str()`` is the exception's type and message; ``remote_traceback`` the child's traceback."""

    def __init__(self, message: str, remote_traceback: str = ""):
        super().__init__(message)
        self.remote_traceback = remote_traceback


class MemoryLimitExceeded(LimitExceeded):
    """The child's resident memory went over the memory limit: the child was killed."""


@dataclass(frozen=True)
class EngineResult:
    image: ProcessedImage
    warnings: tuple[str, ...]  # what codecs printed (and Python warnings) while processing it


# Engine error classes the child may name, by name (only these are ever re-created).
_ERROR_CLASSES = {
    name: cls for name, cls in vars(engine_errors).items()
    if isinstance(cls, type) and issubclass(cls, EngineError)
}  # fmt: skip


class EnginePool:
    """At most ``processes`` images at once, one per child; ``run`` is blocking and thread-safe.

    ``limits`` defaults to ``Limits.from_env()``; ``memory_limit_bytes`` (the resident memory at
    which a child is killed) to ``limits.max_memory_bytes``."""

    def __init__(self, processes: int, limits: Limits | None = None, memory_limit_bytes: int | None = None):
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.limits = limits or Limits.from_env()
        self.memory_limit_bytes = memory_limit_bytes or self.limits.max_memory_bytes
        self._context = multiprocessing.get_context("spawn")  # children start clean: no inherited threads
        # Every child is started from this one thread: PR_SET_PDEATHSIG fires when the thread
        # that started a child ends, and the threads calling run() may come and go.
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="vodimg-engine-starter")
        self._changed = threading.Condition()
        # A free slot holds a child, or None when one could not be started (retried on use).
        self._idle: list[_Child | None] = []
        self._busy: set[_Child] = set()
        self._closed = False
        _open_pools.add(self)
        try:
            for _ in range(processes):
                self._idle.append(self._start_child())
        except BaseException:
            self.close()
            raise

    def run(
        self,
        data: bytes,
        configure: dict,
        progress: Callable[[float], None] | None = None,
    ) -> EngineResult:
        """Process one image in a free child (waiting for one). Raises the engine's errors with
        the child's class and message, EngineCrashed (PoolClosed, EngineInternalError),
        ProcessingTimeout or MemoryLimitExceeded; each carries ``.warnings``. An exception
        raised by ``progress`` ends the image (and its child) and propagates."""
        child = self._acquire()
        try:
            return child.run(data, configure, progress, self.limits, self.memory_limit_bytes)
        finally:
            self._release(child)

    def child_pids(self) -> list[int]:
        """The process ids of the children now alive (for monitoring and tests)."""
        with self._changed:
            children = [child for child in self._idle if child is not None] + list(self._busy)
        return sorted(child.pid for child in children if child.alive())

    def close(self, grace_seconds: float = 0) -> None:
        """Refuse new images, let running ones finish for up to ``grace_seconds``, then kill
        every child (a run() still waiting or running raises PoolClosed). Idempotent."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            deadline = time.monotonic() + grace_seconds
            while self._busy and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            idle = [child for child in self._idle if child is not None]
            self._idle = []
            busy = list(self._busy)
            for child in busy:
                child.closing = True
        for child in idle + busy:
            child.kill()
        for child in idle:
            child.dispose()
        with self._changed:  # the threads running them see them die and dispose of them
            self._changed.wait_for(lambda: not self._busy, timeout=10.0)
        self._starter.shutdown(wait=False)
        _open_pools.discard(self)

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start_child(self) -> "_Child":
        return self._starter.submit(_Child, self._context, self.limits).result()

    def _acquire(self) -> "_Child":
        with self._changed:
            while not self._idle and not self._closed:
                self._changed.wait()
            if self._closed:
                raise _with_warnings(PoolClosed("the engine pool is closed"), ())
            child = self._idle.pop()  # the one used last: its models are loaded
            if child is not None:
                self._busy.add(child)
                return child
        try:
            child = self._start_child()
        except Exception as err:
            self._put_back(None)
            raise _with_warnings(EngineCrashed(f"could not start an engine process: {err}"), ()) from err
        with self._changed:
            self._busy.add(child)
        return child

    def _release(self, child: "_Child") -> None:
        if child.reusable(self.memory_limit_bytes * RECYCLE_MEMORY_FRACTION):
            successor = child
        else:
            child.kill()
            child.dispose()
            successor = self._replacement()
        with self._changed:
            self._busy.discard(child)
        self._put_back(successor)

    def _replacement(self) -> "_Child | None":
        """A new child at once (it warms up while others work), or None to retry on use."""
        if self._closed:
            return None
        try:
            return self._start_child()
        except Exception:  # out of processes or memory just now; RuntimeError: closed meanwhile
            logger.warning("could not start an engine process; will retry", exc_info=True)
            return None

    def _put_back(self, slot: "_Child | None") -> None:
        with self._changed:
            closed = self._closed
            if not closed:
                self._idle.append(slot)
            self._changed.notify_all()
        if closed and slot is not None:
            slot.kill()
            slot.dispose()


# Pools not closed yet: closed at interpreter exit, before multiprocessing's own exit handler
# would wait forever for children that ignore its SIGTERM. (On Linux the starter thread's end
# at exit kills them too, through PR_SET_PDEATHSIG; this holds everywhere.)
_open_pools: "weakref.WeakSet[EnginePool]" = weakref.WeakSet()


@atexit.register
def _close_open_pools() -> None:
    for pool in list(_open_pools):
        pool.close()


class _Child:
    """One child process, its pipe, and the file its stderr goes to while it works."""

    def __init__(self, context, limits: Limits):
        fd, self._stderr_path = tempfile.mkstemp(prefix="vodimg-engine-", suffix=".stderr")
        self._stderr_fd = fd
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_engine_child.main,
            args=(child_conn, dataclasses.asdict(limits), self._stderr_path, os.getpid()),
            name="vodimg-engine",
            daemon=True,
        )
        try:
            self._process.start()
        except BaseException:
            self._conn.close()
            os.close(fd)
            self._unlink_stderr_file()
            raise
        finally:
            child_conn.close()  # so that the child's death reads as end of file here
        self.pid = self._process.pid
        self._ready = False
        self._in_job = False  # a job was sent and its reply not fully read
        self._killed = False  # by us (time or memory limit, or close)
        self.closing = False  # close() is killing it
        self._disposed = False

    def alive(self) -> bool:
        return not self._disposed and self._process.is_alive()

    def reusable(self, max_rss: float) -> bool:
        if self._in_job or self._killed or self.closing or not self.alive():
            return False
        rss = self.rss_bytes()
        return rss is None or rss <= max_rss

    def run(self, data, configure, progress, limits: Limits, memory_limit: int) -> EngineResult:
        if not self._ready:
            self._wait_ready()
        started = time.monotonic()
        kill_at = started + limits.max_seconds + KILL_GRACE_SECONDS
        self._in_job = True
        try:
            self._conn.send(configure)
            self._conn.send_bytes(data)
        except OSError:
            raise self._died() from None
        next_check = started + MEMORY_POLL_SECONDS
        while True:
            now = time.monotonic()
            if now >= kill_at:
                self.kill()
                raise self._error(ProcessingTimeout(
                    f"processing took longer than the limit of {limits.max_seconds:g} s "
                    "(VODIMG_MAX_SECONDS); the engine process was stopped"
                ))  # fmt: skip
            if now >= next_check:
                self._check_memory(memory_limit)
                next_check = now + MEMORY_POLL_SECONDS
            ready = wait_readable([self._conn, self._process.sentinel], min(kill_at, next_check) - now)
            if self._conn in ready:
                kind, payload = self._receive()
                if kind == "progress":
                    if progress is not None:
                        progress(payload)
                    continue
                return payload
            if self._process.sentinel in ready:
                raise self._died()

    def _receive(self):
        """The next message: ("progress", fraction), ("done", EngineResult); raises for errors."""
        try:
            message = self._conn.recv()
            kind = message[0]
            if kind == "progress":
                return "progress", message[1]
            if kind == "done":
                _, fmt, width, height, warnings = message
                data = self._conn.recv_bytes()
                self._in_job = False
                return "done", EngineResult(ProcessedImage(data, fmt, width, height, len(data)), warnings)
        except (EOFError, OSError):
            raise self._died() from None
        self._in_job = False
        if kind == "error":
            _, name, text, warnings = message
            raise _with_warnings(_ERROR_CLASSES.get(name, EngineError)(text), warnings)
        if kind == "memory":
            _, text, warnings = message
            raise _with_warnings(MemoryLimitExceeded(
                f"the image needs more memory than is available ({text or 'MemoryError'})"), warnings)
        if kind == "bug":
            _, text, warnings, remote_traceback = message
            raise _with_warnings(EngineInternalError(f"internal error: {text}", remote_traceback), warnings)
        raise self._error(EngineInternalError(f"unexpected message from the engine process: {kind!r}"))

    def _check_memory(self, memory_limit: int) -> None:
        rss = self.rss_bytes()
        if rss is not None and rss > memory_limit:
            self.kill()
            raise self._error(MemoryLimitExceeded(
                f"the image needs more than {memory_limit / MIB:.0f} MiB of memory, the limit "
                "(VODIMG_MAX_MEMORY_BYTES); the engine process was stopped"
            ))  # fmt: skip
        if os.fstat(self._stderr_fd).st_size > MAX_STDERR_FILE_BYTES:
            self.kill()
            raise self._error(LimitExceeded(
                f"the decoder printed more than {MAX_STDERR_FILE_BYTES // MIB} MiB of warnings "
                "on this image; the engine process was stopped"
            ))  # fmt: skip

    def rss_bytes(self) -> int | None:
        """Resident memory from /proc (None where there is none: no memory limit then)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            return None

    def _wait_ready(self) -> None:
        ready = wait_readable([self._conn, self._process.sentinel], START_TIMEOUT_SECONDS)
        try:
            if self._conn in ready and self._conn.recv() == ("ready",):
                self._ready = True
                return
        except (EOFError, OSError):
            pass
        self._killed = True  # not reusable
        if self.closing:
            raise self._error(PoolClosed("the engine pool was closed"))
        if not ready:
            self.kill()
            raise self._error(EngineCrashed(f"the engine process did not start within {START_TIMEOUT_SECONDS:g} s"))
        raise self._error(EngineCrashed(f"the engine process failed to start ({self._how_it_ended()})"))

    def _died(self) -> EngineError:
        self._in_job = True  # whatever happened, this child is done
        if self.closing:
            return self._error(PoolClosed("the engine pool was closed while processing the image"))
        return self._error(EngineCrashed(
            f"the engine process died while processing the image ({self._how_it_ended()})"))

    def _how_it_ended(self) -> str:
        self._process.join(1.0)
        code = self._process.exitcode
        if code is None:
            return "its pipe closed"
        if code >= 0:
            return f"exit status {code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (", possibly by the out-of-memory killer" if -code == signal.SIGKILL else "")

    def _error(self, err: EngineError) -> EngineError:
        """``err`` with what the child printed on this image before it ended."""
        try:
            printed = os.pread(self._stderr_fd, _engine_child.MAX_WARNING_BYTES, 0)
        except OSError:
            printed = b""
        return _with_warnings(err, tuple(_engine_child.warning_lines(printed)))

    def kill(self) -> None:
        self._killed = True
        if self._disposed or self._process.exitcode is not None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _unlink_stderr_file(self) -> None:
        try:
            os.unlink(self._stderr_path)
        except FileNotFoundError:
            pass

    def dispose(self) -> None:
        """Reap the (killed or exited) process and remove its pipe and file. Idempotent."""
        if self._disposed:
            return
        self._disposed = True
        self._process.join(5.0)
        self._conn.close()
        os.close(self._stderr_fd)
        self._unlink_stderr_file()  # the child removes it once open: unless it never started
        if self._process.exitcode is not None:
            self._process.close()


def _with_warnings(err: EngineError, warnings) -> EngineError:
    err.warnings = tuple(warnings)
    return err
