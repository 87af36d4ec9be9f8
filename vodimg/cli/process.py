"""``vodimg process``: run the image engine on local files, one worker process per core.

    vodimg process --config CONF.json --out OUTDIR [--jobs N] IMAGE [IMAGE ...]

CONF.json holds one ProcessImageConfigure object exactly as the API spells it (EncodeConfig,
EnhanceConfig, BeautyConfig, AiCutOutConfig), validated as the API validates it. Each IMAGE is
written to ``OUTDIR/<stem>.<jpg|png|bmp|webp>``; each image that fails gets one line on stderr
and the others still finish. Exit status: 0 all done, 1 some image failed, 2 bad usage or config.
Limits come from the VODIMG_MAX_* environment variables (docs/engine.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

PROG = "vodimg process"
# Libraries that start their own thread pools read these when first imported (in the worker).
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "process",
        help="process local image files with a ProcessImageConfigure",
        description="Process local images as a ProcessImageConfigure (JSON file) says, one worker "
        "process per core. Writes OUTDIR/<input stem>.<jpg|png|bmp|webp>. Exit status 1 if any "
        "image failed (one line each on stderr), 2 for bad usage or configuration.",
    )
    parser.add_argument("--config", required=True, type=Path, metavar="CONF.json",
                        help="a ProcessImageConfigure object, as in CreateProcessImageAsyncTemplate")
    parser.add_argument("--out", required=True, type=Path, metavar="OUTDIR", help="output directory (created if missing)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes (default: the cores this process may use)")
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
    context = multiprocessing.get_context("spawn")  # workers start clean: no inherited threads
    progress = context.Queue()  # (image, fraction done) from the workers, for the bar
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(progress,)) as pool, tqdm(
        total=len(images), unit="img", file=sys.stderr, disable=None, dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}]",
    ) as bar:
        futures = {pool.submit(process_file, image, out_dir, configure, limits): image for image in images}
        try:
            failures = _collect(futures, bar, progress)
        except KeyboardInterrupt:
            for future in futures:  # images not started yet never start
                future.cancel()
            raise
    return failures


def _collect(futures: dict, bar: tqdm, progress) -> int:
    """Report each finished image; between them, move the bar by the images' partial progress
    (super-resolution takes seconds per image)."""
    failures, finished, partial = 0, 0, {}
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        for future in done:
            failures += _report(future, futures[future])
            finished += 1
            partial.pop(str(futures[future]), None)
        _drain(progress, partial, finished_images={str(futures[f]) for f in futures if f.done()})
        bar.n = finished + sum(partial.values())
        bar.refresh()
    return failures


def _report(future, image: Path) -> int:
    """Print the output path or one error line; 1 if the image failed."""
    try:
        written, error = future.result()
    except Exception as err:  # the worker process itself died (killed, out of memory)
        written, error = None, f"worker failed: {type(err).__name__}: {err}"
    if error is None:
        print(written, flush=True)
        return 0
    tqdm.write(f"{PROG}: {image}: {error}", file=sys.stderr)
    return 1


def _drain(progress, partial: dict, finished_images: set) -> None:
    while True:
        try:
            image, fraction = progress.get_nowait()
        except queue.Empty:
            return
        if image not in finished_images:
            partial[image] = min(fraction, 0.99)


_progress_queue = None  # set in each worker process by _init_worker


def _init_worker(progress) -> None:
    """One thread per worker: one process per core is faster than threads in one process."""
    global _progress_queue
    _progress_queue = progress
    for name in SINGLE_THREAD_ENV:
        os.environ[name] = "1"
    import cv2

    cv2.setNumThreads(1)


def process_file(image: Path, out_dir: Path, configure: dict, limits) -> tuple[Path | None, str | None]:
    """Process one file: (output path, None), or (None, one line saying what went wrong)."""
    from vodimg.engine import EngineError, process_image
    from vodimg.engine.codec import EXTENSIONS

    try:
        size = image.stat().st_size
        if size > limits.max_input_bytes:  # do not even read it
            return None, f"the image file is {size} bytes, more than the limit of {limits.max_input_bytes}"
        result = process_image(image.read_bytes(), configure, limits, progress=_reporter(image))
        target = out_dir / f"{image.stem}.{EXTENSIONS[result.format]}"
        _write_atomically(target, result.data)
        return target, None
    except EngineError as err:
        return None, str(err)
    except OSError as err:
        return None, f"{err.strerror or err}"
    except Exception as err:  # a bug: still one line, and the other images go on
        return None, f"internal error: {type(err).__name__}: {err}"


def _reporter(image: Path):
    """A progress callback that sends (image, fraction) to the parent at most every 1%."""
    if _progress_queue is None:
        return None
    last = [0.0]

    def report(fraction: float) -> None:
        if fraction - last[0] >= 0.01:
            last[0] = fraction
            _progress_queue.put((str(image), fraction))

    return report


def _write_atomically(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
