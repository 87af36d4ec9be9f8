"""``vodimg process``: run the image engine on local files, one engine process per core.

    vodimg process --config CONF.json --out OUTDIR [--jobs N] IMAGE [IMAGE ...]

CONF.json holds one ProcessImageConfigure object exactly as the API spells it (EncodeConfig,
EnhanceConfig, BeautyConfig, AiCutOutConfig), validated as the API validates it. Each IMAGE is
written to ``OUTDIR/<stem>.<jpg|png|bmp|webp>``; each image that fails (a crash or a hang of the
engine included: it runs in child processes, vodimg.worker.engine_pool) gets one line on stderr
and the others still finish. Exit status: 0 all done, 1 some image failed, 2 bad usage or config.
Limits come from the VODIMG_MAX_* environment variables (docs/engine.md); the time and memory
limits are enforced by killing the engine process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

PROG = "vodimg process"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "process",
        help="process local image files with a ProcessImageConfigure",
        description="Process local images as a ProcessImageConfigure (JSON file) says, one engine "
        "process per core. Writes OUTDIR/<input stem>.<jpg|png|bmp|webp>. Exit status 1 if any "
        "image failed (one line each on stderr), 2 for bad usage or configuration.",
    )
    parser.add_argument("--config", required=True, type=Path, metavar="CONF.json",
                        help="a ProcessImageConfigure object, as in CreateProcessImageAsyncTemplate")
    parser.add_argument("--out", required=True, type=Path, metavar="OUTDIR", help="output directory (created if missing)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="engine processes (default: the cores this process may use)")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        configure = load_configure(args.config)
        limits = _limits()
        jobs = _jobs(args.jobs, len(args.images))
        _refuse_clashing_outputs(args.images)
        args.out.mkdir(parents=True, exist_ok=True)
    except UsageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    try:
        failures = _process_all(args.images, args.out, configure, limits, jobs)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 1 if failures else 0


class UsageError(Exception):
    """Bad arguments or configuration: the whole run is refused."""


def load_configure(path: Path) -> dict:
    """Read and validate CONF.json exactly as ProcessImageAsync validates a template's configure."""
    from vodimg.errors import ApiError
    from vodimg.validation import check_configure, validate_structure

    try:
        conf = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not valid JSON: {err}") from None
    try:
        configure = validate_structure("ProcessImageAsyncTask", conf, "ProcessImageConfigure")
        check_configure(configure, "ProcessImageConfigure")
    except ApiError as err:
        raise UsageError(f"{path}: {err.code}: {err.message}") from None
    return configure


def _limits():
    from vodimg.engine.limits import Limits

    try:
        return Limits.from_env()
    except ValueError as err:
        raise UsageError(str(err)) from None


def _jobs(requested: int | None, images: int) -> int:
    if requested is not None and requested < 1:
        raise UsageError(f"--jobs must be at least 1, got {requested}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or cores, images))


def _refuse_clashing_outputs(images: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for image in images:
        other = seen.setdefault(image.stem, image)
        if other != image:
            raise UsageError(f"{other} and {image} would both be written as {image.stem}.*: rename one")


def _process_all(images: list[Path], out_dir: Path, configure: dict, limits, jobs: int) -> int:
    from vodimg.worker.engine_pool import EnginePool

    board = _ProgressBoard()
    pool = EnginePool(jobs, limits)  # the time and memory limits hold; a crash costs one image
    threads = ThreadPoolExecutor(jobs, thread_name_prefix="vodimg-process")
    try:
        with tqdm(
            total=len(images), unit="img", file=sys.stderr, disable=None, dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}]",
        ) as bar:  # fmt: skip
            futures = {
                threads.submit(process_file, pool, image, out_dir, configure, limits, board.reporter(image)): image
                for image in images
            }
            try:
                return _collect(futures, bar, board)
            except KeyboardInterrupt:
                for future in futures:  # images not started yet never start
                    future.cancel()
                raise
    finally:
        pool.close()  # kills what still runs (after Ctrl-C), so the threads end
        threads.shutdown(wait=True)


class _ProgressBoard:
    """The fraction done of each image being processed, written by the pool's calling threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._partial: dict[Path, float] = {}

    def reporter(self, image: Path):
        def report(fraction: float) -> None:
            with self._lock:
                self._partial[image] = min(fraction, 0.99)

        return report

    def finished(self, image: Path) -> None:
        with self._lock:
            self._partial.pop(image, None)

    def total(self) -> float:
        with self._lock:
            return sum(self._partial.values())


def _collect(futures: dict, bar: tqdm, board: _ProgressBoard) -> int:
    """Report each finished image above the bar; between them, move the bar by the images'
    partial progress (super-resolution takes seconds per image)."""
    failures, finished = 0, 0
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        for future in done:
            failures += _report(futures[future], *future.result())
            finished += 1
            board.finished(futures[future])
        bar.n = finished + board.total()
        bar.refresh()
    return failures


def _report(image: Path, written: Path | None, error: str | None, warnings: tuple[str, ...]) -> int:
    """The output path on stdout, or one error line on stderr, printed above the bar; an image's
    codec warnings on one line of their own naming it. 1 if the image failed."""
    said = f" (the decoder said: {'; '.join(warnings)})" if warnings else ""
    if error is not None:
        tqdm.write(f"{PROG}: {image}: {error}{said}", file=sys.stderr)
        return 1
    if warnings:
        tqdm.write(f"{PROG}: {image}: warning: {'; '.join(warnings)}", file=sys.stderr)
    tqdm.write(str(written), file=sys.stdout)
    sys.stdout.flush()
    return 0


def process_file(pool, image: Path, out_dir: Path, configure: dict, limits, progress=None):
    """Process one file in the pool: (output path, None, warnings), or (None, one line saying
    what went wrong, warnings)."""
    from vodimg.engine import EngineError
    from vodimg.engine.codec import EXTENSIONS

    try:
        size = image.stat().st_size
        if size > limits.max_input_bytes:  # do not even read it
            return None, f"the image file is {size} bytes, more than the limit of {limits.max_input_bytes}", ()
        result = pool.run(image.read_bytes(), configure, progress)
        target = out_dir / f"{image.stem}.{EXTENSIONS[result.image.format]}"
        _write_atomically(target, result.image.data)
        return target, None, result.warnings
    except EngineError as err:
        return None, str(err), getattr(err, "warnings", ())
    except OSError as err:
        return None, f"{err.strerror or err}", ()
    except Exception as err:  # a bug: still one line, and the other images go on
        return None, f"internal error: {type(err).__name__}: {err}", ()


def _write_atomically(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
