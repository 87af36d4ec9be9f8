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
import signal
import sys
from pathlib import Path

import uvicorn

from vodimg.config import ConfigError, Settings

GRACEFUL_SHUTDOWN_SECONDS = 5

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
    parser.add_argument("--data-dir", type=Path, help="data directory (VODIMG_DATA_DIR, default ./data)")
    parser.add_argument("--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
                                               "(VODIMG_DATABASE_URL, default SQLite in the data directory)")
    parser.add_argument("--tls-port", type=int, help="also serve HTTPS on this port (VODIMG_TLS_PORT)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (VODIMG_TLS_CERT; default: a "
                                                      "local CA's certificate kept in DATA_DIR/tls)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert (VODIMG_TLS_KEY)")
    parser.add_argument("--rate-limit", type=float, help="requests per second per account and action "
                                                         "(VODIMG_RATE_LIMIT, default 20, 0 = off; per process)")
    parser.add_argument("--no-auth", action="store_true", help="accept every request without checking "
                                                               "signatures (VODIMG_AUTH=off); local use only")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env_and_args(args)
    except ConfigError as error:
        print(f"vodimg serve: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.auth:
        print(NO_AUTH_WARNING, file=sys.stderr, flush=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app, database = build_app(settings)
    try:
        servers = build_servers(app, settings, args.log_level)
    except (OSError, ValueError) as error:
        print(f"vodimg serve: {error}", file=sys.stderr)
        return 2
    try:
        _run_loop(serve_all(servers, settings))
    finally:
        database.dispose()
    return 0


def build_app(settings: Settings):
    """Database (migrated), services, provider and the ASGI app; prints a first-start key."""
    from vodimg.api.provider import VodProvider
    from vodimg.domain.accounts import AccountService
    from vodimg.domain.templates import TemplateService
    from vodimg.storage.db import Database, sqlite_url
    from vodimg.wire.app import create_app

    database = Database(settings.database_url or sqlite_url(settings.data_dir))
    database.migrate()
    accounts = AccountService(database)
    provider = VodProvider(accounts, TemplateService(database))
    created = accounts.bootstrap(settings.secret_id, settings.secret_key, settings.sub_app_id)
    if created:
        print("vodimg: first start, created the default account and its API key "
              "(shown once; `vodimg accounts` manages keys):", flush=True)
        print(json.dumps(created), flush=True)
    return create_app(provider, accounts, settings), database


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled by ``serve_all`` (for all listeners at once)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def build_servers(app, settings: Settings, log_level: str) -> list:
    # A TLS connection the client leaves idle can hold a graceful shutdown for its SSL close
    # timeout; requests in flight get GRACEFUL_SHUTDOWN_SECONDS to finish.
    common = dict(host=settings.host, loop="none", http="httptools", lifespan="off",
                  timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                  access_log=log_level == "debug", log_level="debug" if log_level == "debug" else "warning")
    servers = [_Server(uvicorn.Config(app, port=settings.port, **common))]
    if settings.tls_port is not None:
        cert, key = settings.tls_cert, settings.tls_key
        if cert is None:
            from vodimg.wire.tls import ensure_local_tls

            files = ensure_local_tls(settings.data_dir)
            cert, key = files.cert, files.key
        for path in (cert, key):
            if not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")
        servers.append(_Server(uvicorn.Config(app, port=settings.tls_port, ssl_certfile=str(cert),
                                              ssl_keyfile=str(key), **common)))
    return servers


async def serve_all(servers: list, settings: Settings) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.force_exit = server.should_exit
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.ensure_future(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            stop()
            break
        await asyncio.sleep(0.02)
    else:
        _print_endpoints(settings)
    await asyncio.gather(*tasks)


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
