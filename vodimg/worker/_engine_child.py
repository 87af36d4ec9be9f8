"""The child side of the engine pool (vodimg.worker.engine_pool): one image at a time, forever.

Imports only the standard library at the top, so the single-thread variables are set before
numpy, OpenCV or onnxruntime are first imported. The protocol on the pipe, parent to child:
``configure`` (pickled dict), then the image with ``send_bytes``; child to parent:
``("ready",)`` once, then per image any number of ``("progress", fraction)`` and one of
``("done", format, width, height, warnings)`` followed by the encoded image (``send_bytes``),
``("error", class name, message, warnings)`` for an EngineError,
``("memory", message, warnings)`` for a MemoryError, ``("bug", message, warnings, traceback)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
import warnings

# Libraries that start their own thread pools read these when first imported: one thread per
# child, one child per core, is faster than threads inside one process.
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_SECONDS = 0.5  # fallback for systems without PR_SET_PDEATHSIG
PROGRESS_INTERVAL_SECONDS = 0.1  # at most 10 progress messages a second
# What is kept of the codec messages of one image: the file the parent reads is bounded apart.
MAX_WARNING_BYTES = 64 * 1024
MAX_WARNINGS = 20
MAX_WARNING_CHARS = 300


def main(conn, limit_values: dict, stderr_path: str, parent_pid: int) -> None:
    """Entry point of a child process (multiprocessing target). ``limit_values`` are the fields
    of a Limits: plain values, so that unpickling the arguments imports nothing of the engine."""
    # Ctrl-C and a service manager's SIGTERM go to the whole process group: the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    capture = StderrCapture(stderr_path)
    with contextlib.suppress(FileNotFoundError):  # the parent holds it open too: nothing is
        os.unlink(stderr_path)  # left behind if both die
    for name in SINGLE_THREAD_ENV:
        os.environ[name] = "1"
    from vodimg.engine.limits import Limits

    limits = Limits(**limit_values)
    process_image = _warm_up(limits)
    conn.send(("ready",))
    while True:
        try:
            configure = conn.recv()
            data = conn.recv_bytes()
        except (EOFError, OSError):  # the parent closed the pipe or is gone
            return
        _reply(conn, _process(process_image, data, configure, limits, capture, conn))


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL when the parent dies, even by kill -9 (Linux); otherwise notice within 0.5 s.

    PR_SET_PDEATHSIG fires when the *thread* that started this process ends: the pool starts
    children from one long-lived thread for that reason."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # died before the request took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(1)  # never deliver a result to nobody


def _warm_up(limits):
    """Import the engine and run a tiny image through it, so the first real image pays neither."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    from vodimg.engine import process_image

    tiny = cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    try:
        process_image(tiny, {"EncodeConfig": {"Format": "JPEG"}}, limits)
    except Exception:  # a warm-up failure must not stop the child: real images will say why
        traceback.print_exc()
    return process_image


class StderrCapture:
    """Points fd 2 at a file shared with the parent while one image is processed.

    Native decoders (libjpeg, libpng, libwebp) print their warnings on fd 2; this keeps them
    with the image they concern. The parent reads the same file, so it can quote what a child
    printed before it was killed."""

    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDWR)
        try:
            self._saved = os.dup(2)
        except OSError:  # started without a stderr (a daemon): restore to nowhere
            self._saved = os.open(os.devnull, os.O_WRONLY)

    def __enter__(self) -> "StderrCapture":
        sys.stderr.flush()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)  # fd 2 shares this offset after dup2
        os.dup2(self._fd, 2)
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)

    def lines(self) -> list[str]:
        return warning_lines(os.pread(self._fd, MAX_WARNING_BYTES, 0))


def warning_lines(printed: bytes) -> list[str]:
    """Stripped, non-empty, distinct lines, bounded in number and length."""
    found: list[str] = []
    for line in printed.decode("utf-8", "replace").splitlines():
        line = line.strip()[:MAX_WARNING_CHARS]
        if line and line not in found:
            found.append(line)
        if len(found) == MAX_WARNINGS:
            break
    return found


class _Progress:
    """The engine's progress callback, forwarded to the parent at most 10 times a second (an
    image done within 0.1 s sends none)."""

    def __init__(self, conn):
        self._conn = conn
        self._last = time.monotonic()

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_SECONDS:
            self._last = now
            self._conn.send(("progress", float(fraction)))


def _process(process_image, data: bytes, configure: dict, limits, capture: StderrCapture, conn):
    """One image: the reply message and the encoded bytes (or None)."""
    from vodimg.engine.errors import EngineError

    with capture, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = process_image(data, configure, limits, _Progress(conn))
        except EngineError as err:
            return ("error", _known_class(err), str(err), _warnings(capture, caught)), None
        except MemoryError as err:
            return ("memory", str(err), _warnings(capture, caught)), None
        except Exception as err:  # a bug in the engine: the parent reports it, the child lives on
            message = f"{type(err).__name__}: {err}"
            return ("bug", message, _warnings(capture, caught), traceback.format_exc()), None
    done = ("done", result.format, result.width, result.height, _warnings(capture, caught))
    return done, result.data


def _warnings(capture: StderrCapture, caught: list) -> tuple[str, ...]:
    sys.stderr.flush()
    python = [f"{w.category.__name__}: {w.message}" for w in caught]
    return tuple(warning_lines("\n".join(capture.lines() + python).encode()))


def _known_class(err: Exception) -> str:
    """The name of the nearest class of vodimg.engine.errors, which the parent re-creates."""
    from vodimg.engine import errors

    for cls in type(err).__mro__:
        if getattr(errors, cls.__name__, None) is cls:
            return cls.__name__
    return "EngineError"


def _reply(conn, reply) -> None:
    message, data = reply
    try:
        conn.send(message)
        if data is not None:
            conn.send_bytes(data)
    except (BrokenPipeError, EOFError, OSError):  # the parent is gone
        os._exit(1)
