"""``vodimg serve``: the API over HTTP, and over HTTPS too when a TLS port is given.

Both listeners are uvicorn servers (httptools, uvloop) in one event loop, sharing one app, one
database and one rate limiter. Every option can also be set by an environment variable (see
``vodimg/config.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import uvicorn

from vodimg.config import ConfigError, Settings
from vodimg.objectstore import ObjectStoreError

GRACEFUL_SHUTDOWN_SECONDS = 5
FIRST_KEY_FILE = "first-start-key.json"  # in the data directory

NO_AUTH_WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: authentication is OFF (--no-auth / VODIMG_AUTH=off). Signatures are not checked:  !!
!! ANY client that can reach this port acts as the default account. Throwaway local use only. !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the Tencent Cloud API 3.0 endpoint (VOD 2018-07-17)",
        description="Serve the VOD image processing API. Options override the VODIMG_* environment "
                    "variables; VODIMG_SECRET_ID/VODIMG_SECRET_KEY (and VODIMG_SUBAPP_ID) set the "
                    "default account's key, else one is generated and printed on first start.")
    parser.add_argument("--host", help="address to listen on (VODIMG_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (VODIMG_PORT, default 9000)")
    parser.add_argument("--tls-port", type=int, help="also serve HTTPS on this port (VODIMG_TLS_PORT)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (VODIMG_TLS_CERT; default: a "
                                                      "local CA's certificate kept in DATA_DIR/tls)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert (VODIMG_TLS_KEY)")
    parser.add_argument("--rate-limit", type=float, help="requests per second per account and action "
                                                         "(VODIMG_RATE_LIMIT, default 20, 0 = off; per process)")
    parser.add_argument("--no-auth", action="store_true", help="accept every request without checking "
                                                               "signatures (VODIMG_AUTH=off); local use only")
    parser.add_argument("--workers", type=int, help="API processes sharing the port(s) (VODIMG_WORKERS, "
                                                      "default 1); the rate limit applies per process")
    parser.add_argument("--header-timeout", type=float, help="seconds a client has to send a complete "
                                                               "request head (VODIMG_HEADER_TIMEOUT, default 10)")
    parser.add_argument("--max-connections", type=int, help="open connections per API process "
                                                            "(VODIMG_MAX_CONNECTIONS, default 1024)")
    add_shared_options(parser, engine_help="image engine processes of the in-process worker "
                                           "(VODIMG_ENGINE_PROCESSES, default one per core; 0: API only)")
    parser.set_defaults(handler=run)


def add_shared_options(parser, engine_help: str) -> None:
    """The options ``vodimg serve`` and ``vodimg worker`` share: where the data lives, the public
    URL of served files, the engine processes, the log level."""
    parser.add_argument("--data-dir", type=Path, help="data directory (VODIMG_DATA_DIR, default ./data)")
    parser.add_argument("--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
                                               "(VODIMG_DATABASE_URL, default SQLite in the data directory)")
    parser.add_argument("--storage-url", help="object store: a directory or s3://bucket/prefix "
                                              "(VODIMG_STORAGE_URL, default DATA_DIR/objects)")
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL for an s3:// store (VODIMG_S3_ENDPOINT, "
                                              "default AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--public-url", help="base of served file URLs, e.g. https://media.example.com "
                                             "(VODIMG_PUBLIC_URL, default http://HOST:PORT)")
    parser.add_argument("--engine-processes", type=int, help=engine_help)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env_and_args(args)
    except ConfigError as error:
        print(f"vodimg serve: {error}", file=sys.stderr)
        return 2
    _configure_logging(args.log_level)
    if not settings.auth:
        print(NO_AUTH_WARNING, file=sys.stderr, flush=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        tls_files = tls_files_for(settings)
        database = prepare_database(settings)
    except (OSError, ValueError) as error:
        print(f"vodimg serve: {error}", file=sys.stderr)
        return 2
    try:
        _services(settings, database)  # opens and checks the object store
    except ObjectStoreError as error:
        print(f"vodimg serve: object store: {error}", file=sys.stderr)
        database.dispose()
        return 2
    try:
        worker = start_worker(settings, database)
    except (OSError, ValueError) as error:
        print(f"vodimg serve: {error}", file=sys.stderr)
        return 2
    try:
        if settings.workers == 1:
            _run_loop(serve_all(build_servers(build_app(settings, database), settings, tls_files,
                                              args.log_level), settings))
            return 0
        return supervise(settings, tls_files, args.log_level)  # each API process opens its own database
    finally:
        stop_worker(worker, settings)
        database.dispose()
        print("vodimg: stopped", flush=True)


def _configure_logging(log_level: str) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level != "debug":
        for name in ("alembic", "botocore", "boto3"):
            logging.getLogger(name).setLevel(logging.WARNING)


def prepare_database(settings: Settings):
    """Open and migrate the database, make sure the default account exists; prints a first-start key."""
    from vodimg.domain.accounts import AccountService
    from vodimg.storage.db import Database, sqlite_url

    database = Database(settings.database_url or sqlite_url(settings.data_dir))
    database.migrate()
    created = AccountService(database).bootstrap(settings.secret_id, settings.secret_key, settings.sub_app_id)
    if created:
        key_file = _write_private(settings.data_dir / FIRST_KEY_FILE, json.dumps(created, indent=2) + "\n")
        print(f"vodimg: first start, created the default account and its API key (also written to "
              f"{key_file}, readable by you only; `vodimg accounts` manages keys):", flush=True)
        print(json.dumps(created), flush=True)
    return database


def _write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def build_app(settings: Settings, database):
    """Services, provider and the ASGI app on an opened database."""
    from vodimg.api.provider import VodProvider
    from vodimg.wire.app import create_app
    from vodimg.wire.cos import CosRoute
    from vodimg.wire.files import file_routes

    services = _services(settings, database)
    provider = VodProvider(services.accounts, services.templates, services.tasks, services.events,
                           library=services.library)
    routes = [CosRoute(services.cos_uploads), *file_routes(services.media.get, services.store, settings.presign_seconds)]
    return create_app(provider, services.accounts, settings, routes=routes)


def _services(settings: Settings, database):
    """One set of services per database (the API and the in-process worker share its wake-ups)."""
    from vodimg.services import build_services

    services = getattr(database, "vodimg_services", None)
    if services is None:
        services = database.vodimg_services = build_services(settings, database)
    return services


def start_worker(settings: Settings, database):
    """The in-process worker (None with --engine-processes 0), started."""
    processes = settings.engine_process_count
    if processes == 0:
        return None
    from vodimg.services import build_worker

    worker, pool = build_worker(_services(settings, database), processes)
    worker.start()
    print(f"vodimg: worker with {processes} engine processes", flush=True)
    return worker, pool


def stop_worker(started, settings: Settings) -> None:
    if started is None:
        return
    worker, pool = started
    if worker.busy:
        print(f"vodimg: finishing {worker.busy} running tasks (at most {settings.drain_seconds:g} s)", flush=True)
    worker.stop(settings.drain_seconds)
    pool.close()


def tls_files_for(settings: Settings) -> tuple[Path, Path] | None:
    """(certificate, key) for the HTTPS listener: the given ones, else the local CA's."""
    if settings.tls_port is None:
        return None
    if settings.tls_cert is None:
        from vodimg.wire.tls import ensure_local_tls

        files = ensure_local_tls(settings.data_dir)
        return files.cert, files.key
    for path in (settings.tls_cert, settings.tls_key):
        if not path.is_file():
            raise ValueError(f"TLS file {path} does not exist")
    return settings.tls_cert, settings.tls_key


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled by ``serve_all`` (for all listeners at once),
    optionally accepting on an inherited, already listening socket."""

    def __init__(self, config: uvicorn.Config, sock=None):
        super().__init__(config)
        self.inherited_sockets = [sock] if sock is not None else None

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def server_configs(app, settings: Settings, tls_files, log_level: str) -> list[uvicorn.Config]:
    # A TLS connection the client leaves idle can hold a graceful shutdown for its SSL close
    # timeout; requests in flight get GRACEFUL_SHUTDOWN_SECONDS to finish. The HTTP protocol is
    # uvicorn's httptools one with bounded request heads, head timeout and connection count
    # (vodimg/wire/http_limits.py), one class for both listeners so they share the count.
    from vodimg.wire.http_limits import ensure_descriptors, limited_protocol

    ensure_descriptors(settings.max_connections)
    protocol = limited_protocol(settings.header_timeout, settings.max_connections)
    common = dict(host=settings.host, loop="none", http=protocol, lifespan="off",
                  timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                  access_log=log_level == "debug", log_level="debug" if log_level == "debug" else "warning")
    configs = [uvicorn.Config(app, port=settings.port, **common)]
    if tls_files is not None:
        cert, key = tls_files
        configs.append(uvicorn.Config(app, port=settings.tls_port, ssl_certfile=str(cert),
                                      ssl_keyfile=str(key), **common))
    return configs


def build_servers(app, settings: Settings, tls_files, log_level: str, sockets=None) -> list:
    """One server per listener; ``sockets`` (one per listener) when the sockets are inherited."""
    configs = server_configs(app, settings, tls_files, log_level)
    return [_Server(config, sock) for config, sock in zip(configs, sockets or [None] * len(configs))]


async def serve_all(servers: list, settings: Settings, announce: bool = True) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if not any(server.should_exit for server in servers):
            print("vodimg: shutting down", flush=True)
        for server in servers:
            server.force_exit = server.should_exit
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.ensure_future(server.serve(sockets=server.inherited_sockets)) for server in servers]
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            stop()
            break
        await asyncio.sleep(0.02)
    else:
        if announce:
            _print_endpoints(settings)
    await asyncio.gather(*tasks)


# -- several API processes ----------------------------------------------------------------------

def supervise(settings: Settings, tls_files, log_level: str) -> int:
    """Bind the listeners here, then run ``settings.workers`` processes accepting on them; a worker
    that dies is replaced. SIGINT/SIGTERM stop them all. The rate limit is per process."""
    import multiprocessing

    configs = server_configs(None, settings, tls_files, log_level)
    try:
        sockets = [config.bind_socket() for config in configs]
    except SystemExit:  # uvicorn exits when it cannot bind, after logging why
        return 2
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start_worker():
        process = context.Process(target=_worker_main, args=(settings, tls_files, log_level, sockets),
                                  name="vodimg-api", daemon=False)
        process.start()
        return process

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    workers = [start_worker() for _ in range(settings.workers)]
    _print_endpoints(settings)
    print(f"vodimg: {settings.workers} API processes (pids {', '.join(str(w.pid) for w in workers)})", flush=True)
    while not stopping:
        for index, worker in enumerate(workers):
            if not worker.is_alive() and not stopping:
                logging.getLogger("vodimg.serve").error(
                    "API process %s exited with %s; starting another", worker.pid, worker.exitcode)
                workers[index] = start_worker()
        time.sleep(0.2)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(GRACEFUL_SHUTDOWN_SECONDS + 5)
        if worker.is_alive():
            worker.kill()
    for sock in sockets:
        sock.close()
    return 0


def _worker_main(settings: Settings, tls_files, log_level: str, sockets) -> None:
    """One API process: its own database pool and app, accepting on the inherited sockets."""
    from vodimg.storage.db import Database, sqlite_url

    _configure_logging(log_level)
    database = Database(settings.database_url or sqlite_url(settings.data_dir))
    try:
        app = build_app(settings, database)
        _run_loop(serve_all(build_servers(app, settings, tls_files, log_level, sockets), settings, announce=False))
    finally:
        database.dispose()


def _print_endpoints(settings: Settings) -> None:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"vodimg: API endpoint http://{host}:{settings.port}/", flush=True)
    if settings.tls_port is not None:
        print(f"vodimg: API endpoint https://{host}:{settings.tls_port}/", flush=True)
        if settings.tls_cert is None:
            from vodimg.wire.tls import tls_files

            print(f"vodimg: HTTPS certificate from the local CA {tls_files(settings.data_dir).ca_cert} "
                  f"(`vodimg tls trust` adds it to this Python's certifi bundle, used by tccli)", flush=True)


def _run_loop(main) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is not available on every platform
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
