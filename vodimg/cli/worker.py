"""``vodimg worker``: task workers alone (no API), on the database and object store of the API.

For scale-out: run it on any machine that reaches the database and the object store, with the
same ``--database-url``, ``--storage-url`` and ``--public-url`` as ``vodimg serve``. SIGTERM or
SIGINT stops claiming, lets running images finish (``VODIMG_DRAIN_SECONDS``) and gives the rest
back to the queue.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from vodimg.config import ConfigError, Settings
from vodimg.objectstore import ObjectStoreError


def register(subparsers) -> None:
    from vodimg.cli.serve import add_shared_options

    parser = subparsers.add_parser(
        "worker", help="run task workers only (no API), for scale-out",
        description="Process the queued tasks of the database with the image engine. Settings as "
                    "for `vodimg serve` (options override VODIMG_* variables).")
    add_shared_options(parser, engine_help="image engine processes (VODIMG_ENGINE_PROCESSES, default one per core)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vodimg.cli.serve import _configure_logging, _services, stop_worker
    from vodimg.services import build_worker
    from vodimg.storage.db import Database, sqlite_url

    try:
        settings = Settings.from_env_and_args(args)
    except ConfigError as error:
        print(f"vodimg worker: {error}", file=sys.stderr)
        return 2
    processes = settings.engine_process_count
    if processes < 1:
        print("vodimg worker: --engine-processes must be at least 1", file=sys.stderr)
        return 2
    _configure_logging(args.log_level)
    try:
        database = Database(settings.database_url or sqlite_url(settings.data_dir))
        database.migrate()
        started = build_worker(_services(settings, database), processes)
    except (OSError, ValueError) as error:
        print(f"vodimg worker: {error}", file=sys.stderr)
        return 2
    except ObjectStoreError as error:
        print(f"vodimg worker: object store: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started[0].start()
    print(f"vodimg: worker with {processes} engine processes", flush=True)
    stop.wait()
    print("vodimg: shutting down", flush=True)
    try:
        stop_worker(started, settings)
    finally:
        database.dispose()
    logging.getLogger("vodimg").info("worker stopped")
    print("vodimg: stopped", flush=True)
    return 0
