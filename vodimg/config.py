"""Server settings: command-line option, else environment variable, else default.

| option           | environment variable   | default                 |
|------------------|------------------------|-------------------------|
| --host           | VODIMG_HOST            | 127.0.0.1               |
| --port           | VODIMG_PORT            | 9000                    |
| --data-dir       | VODIMG_DATA_DIR        | ./data                  |
| --database-url   | VODIMG_DATABASE_URL    | SQLite under data dir   |
| --tls-port       | VODIMG_TLS_PORT        | (no HTTPS)              |
| --tls-cert       | VODIMG_TLS_CERT        | local CA-signed cert    |
| --tls-key        | VODIMG_TLS_KEY         | (with --tls-cert)       |
| --rate-limit     | VODIMG_RATE_LIMIT      | 20 (per second, 0 = off)|
| --no-auth        | VODIMG_AUTH=off        | authentication on       |
| --workers        | VODIMG_WORKERS         | 1 (API processes)       |
|                  | VODIMG_HEADER_TIMEOUT  | 10 (seconds for a head) |
|                  | VODIMG_MAX_CONNECTIONS | 1024 (per API process)  |
|                  | VODIMG_SECRET_ID       | generated on first start|
|                  | VODIMG_SECRET_KEY      |                         |
|                  | VODIMG_SUBAPP_ID       | generated               |
| --public-url     | VODIMG_PUBLIC_URL      | http://HOST:PORT        |
| --storage-url    | VODIMG_STORAGE_URL     | DATA_DIR/objects        |
| --s3-endpoint    | VODIMG_S3_ENDPOINT     | AWS_ENDPOINT_URL, else AWS |
|                  | VODIMG_S3_ADDRESSING   | path with an endpoint, else virtual |
|                  | VODIMG_S3_PRESIGNED_DOWNLOADS | off (on: files redirect to the bucket) |
|                  | VODIMG_S3_PRESIGN_SECONDS | 900                  |
| --engine-processes | VODIMG_ENGINE_PROCESSES | one per core (0: API only) |
|                  | VODIMG_TASK_LEASE_SECONDS | 60                   |
|                  | VODIMG_QUEUE_POLL_SECONDS | 0.2                  |
|                  | VODIMG_DRAIN_SECONDS   | 30                      |
|                  | VODIMG_SESSION_ID_DAYS | 3                       |
|                  | VODIMG_REGION          | ap-guangzhou            |
|                  | VODIMG_UPLOAD_SESSION_SECONDS | 3600             |
|                  | VODIMG_EVENT_LEASE_SECONDS | 30 (PullEvents lease) |
|                  | VODIMG_EVENT_WAIT_SECONDS | 5 (PullEvents long-poll) |
|                  | VODIMG_EVENT_POLL_SECONDS | 0.5 (events of other processes) |
|                  | VODIMG_PUSH_TIMEOUT_SECONDS | 10                   |
|                  | VODIMG_PUSH_RETRY_SECONDS | 5 (first PUSH retry, doubling) |
|                  | VODIMG_PUSH_CONCURRENCY | 16 (PUSH posts at once per process) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_PORT = 9000
DEFAULT_RATE_LIMIT = 20.0
SIGNATURE_WINDOW_SECONDS = 300
# Time to send a complete request head, and open connections per API process (see
# vodimg/wire/http_limits.py, which also holds the head size limits). One idle connection costs
# about 10 KB of server memory and one file descriptor: 1024 keeps a process inside the common
# descriptor limit (1024 soft, raised at start when the hard limit allows) and a few MB of memory,
# while serving far more concurrent clients than the process answers (about a millisecond each).
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 1024


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the option and variable."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    data_dir: Path = Path("data")
    database_url: str | None = None     # None: SQLite file under data_dir
    secret_id: str | None = None
    secret_key: str | None = None
    sub_app_id: int | None = None
    rate_limit: float = DEFAULT_RATE_LIMIT   # requests per second per (account, action); 0 = off
    auth: bool = True
    workers: int = 1                    # API processes sharing the listening sockets
    max_body_bytes: int = MAX_BODY_BYTES
    signature_window: int = SIGNATURE_WINDOW_SECONDS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # seconds to send a complete request head
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open connections per API process
    public_url: str | None = None       # None: http://host:port
    storage_url: str | None = None      # None: DATA_DIR/objects
    s3_endpoint: str | None = None      # None: AWS_ENDPOINT_URL(_S3), else AWS
    s3_addressing: str | None = None    # path | virtual; None: path with an endpoint, else virtual
    s3_presigned_downloads: bool = False  # served files answer 302 to a presigned GET
    s3_presign_seconds: int = 900
    engine_processes: int | None = None  # None: one per core; 0: no worker in this process
    task_lease_seconds: float = 60.0
    queue_poll_seconds: float = 0.2
    drain_seconds: float = 30.0
    session_id_days: float = 3.0
    region: str = "ap-guangzhou"  # StorageRegion, MediaBasicInfo.StorageRegion
    upload_session_seconds: float = 3600.0  # ApplyUpload's TempCertificate and VodSessionKey
    event_lease_seconds: float = 30.0   # VOD's: confirm within 30 s or the event comes again
    event_wait_seconds: float = 5.0     # VOD's: a PullEvents with nothing ready waits up to 5 s
    event_poll_seconds: float = 0.5     # how often waiters look for events of other processes
    push_timeout_seconds: float = 10.0
    push_retry_seconds: float = 5.0     # first PUSH retry; doubling, at most 10 minutes apart
    push_concurrency: int = 16

    @classmethod
    def from_env_and_args(cls, args: Any = None, env: dict[str, str] | None = None) -> "Settings":
        """Build settings from parsed ``vodimg serve`` arguments (attributes that are None were not
        given) and the environment. Raises ConfigError for unusable values."""
        env = os.environ if env is None else env

        def pick(attr: str, var: str, parse: Callable[[str], Any], default: Any) -> Any:
            value = getattr(args, attr, None)
            if value is not None:
                return value
            raw = env.get(var, "").strip()
            if not raw:
                return default
            try:
                return parse(raw)
            except ValueError:
                raise ConfigError(f"{var}={raw!r} is not valid for --{attr.replace('_', '-')}") from None

        settings = cls(
            host=pick("host", "VODIMG_HOST", str, cls.host),
            port=pick("port", "VODIMG_PORT", _port, DEFAULT_PORT),
            tls_port=pick("tls_port", "VODIMG_TLS_PORT", _port, None),
            tls_cert=pick("tls_cert", "VODIMG_TLS_CERT", Path, None),
            tls_key=pick("tls_key", "VODIMG_TLS_KEY", Path, None),
            data_dir=pick("data_dir", "VODIMG_DATA_DIR", Path, Path("data")),
            database_url=pick("database_url", "VODIMG_DATABASE_URL", str, None),
            secret_id=env.get("VODIMG_SECRET_ID") or None,
            secret_key=env.get("VODIMG_SECRET_KEY") or None,
            sub_app_id=pick("sub_app_id", "VODIMG_SUBAPP_ID", int, None),
            rate_limit=pick("rate_limit", "VODIMG_RATE_LIMIT", float, DEFAULT_RATE_LIMIT),
            auth=not getattr(args, "no_auth", False) and _auth_from_env(env),
            workers=pick("workers", "VODIMG_WORKERS", int, 1),
            header_timeout=pick("header_timeout", "VODIMG_HEADER_TIMEOUT", float, DEFAULT_HEADER_TIMEOUT),
            max_connections=pick("max_connections", "VODIMG_MAX_CONNECTIONS", int, DEFAULT_MAX_CONNECTIONS),
            public_url=pick("public_url", "VODIMG_PUBLIC_URL", str, None),
            storage_url=pick("storage_url", "VODIMG_STORAGE_URL", str, None),
            s3_endpoint=pick("s3_endpoint", "VODIMG_S3_ENDPOINT", str, None),
            s3_addressing=pick("s3_addressing", "VODIMG_S3_ADDRESSING", str, None),
            s3_presigned_downloads=_on_off(env, "VODIMG_S3_PRESIGNED_DOWNLOADS", False),
            s3_presign_seconds=pick("s3_presign_seconds", "VODIMG_S3_PRESIGN_SECONDS", int, 900),
            engine_processes=pick("engine_processes", "VODIMG_ENGINE_PROCESSES", int, None),
            task_lease_seconds=pick("task_lease_seconds", "VODIMG_TASK_LEASE_SECONDS", float, 60.0),
            queue_poll_seconds=pick("queue_poll_seconds", "VODIMG_QUEUE_POLL_SECONDS", float, 0.2),
            drain_seconds=pick("drain_seconds", "VODIMG_DRAIN_SECONDS", float, 30.0),
            session_id_days=pick("session_id_days", "VODIMG_SESSION_ID_DAYS", float, 3.0),
            region=pick("region", "VODIMG_REGION", str, "ap-guangzhou"),
            upload_session_seconds=pick("upload_session_seconds", "VODIMG_UPLOAD_SESSION_SECONDS", float, 3600.0),
            event_lease_seconds=pick("event_lease_seconds", "VODIMG_EVENT_LEASE_SECONDS", float, 30.0),
            event_wait_seconds=pick("event_wait_seconds", "VODIMG_EVENT_WAIT_SECONDS", float, 5.0),
            event_poll_seconds=pick("event_poll_seconds", "VODIMG_EVENT_POLL_SECONDS", float, 0.5),
            push_timeout_seconds=pick("push_timeout_seconds", "VODIMG_PUSH_TIMEOUT_SECONDS", float, 10.0),
            push_retry_seconds=pick("push_retry_seconds", "VODIMG_PUSH_RETRY_SECONDS", float, 5.0),
            push_concurrency=pick("push_concurrency", "VODIMG_PUSH_CONCURRENCY", int, 16),
        )
        settings.check()
        return settings

    def check(self) -> None:
        for name, port in (("--port (VODIMG_PORT)", self.port), ("--tls-port (VODIMG_TLS_PORT)", self.tls_port)):
            if port is not None and not 0 < port < 65536:
                raise ConfigError(f"{name} must be between 1 and 65535")
        if (self.secret_id is None) != (self.secret_key is None):
            raise ConfigError("VODIMG_SECRET_ID and VODIMG_SECRET_KEY must be given together")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key (VODIMG_TLS_CERT/KEY) must be given together")
        if self.tls_cert is not None and self.tls_port is None:
            raise ConfigError("--tls-cert needs --tls-port (VODIMG_TLS_PORT)")
        if self.tls_port is not None and self.tls_port == self.port:
            raise ConfigError("--tls-port must differ from --port")
        if not 1 <= self.workers <= 64:
            raise ConfigError("--workers (VODIMG_WORKERS) must be between 1 and 64")
        if not 0 < self.header_timeout <= 3600:
            raise ConfigError("--header-timeout (VODIMG_HEADER_TIMEOUT) must be more than 0 and at most 3600 seconds")
        if not 1 <= self.max_connections <= 1_000_000:
            raise ConfigError("--max-connections (VODIMG_MAX_CONNECTIONS) must be between 1 and 1000000")
        if self.engine_processes is not None and not 0 <= self.engine_processes <= 256:
            raise ConfigError("--engine-processes (VODIMG_ENGINE_PROCESSES) must be between 0 and 256")
        for name, value in (("VODIMG_TASK_LEASE_SECONDS", self.task_lease_seconds),
                            ("VODIMG_QUEUE_POLL_SECONDS", self.queue_poll_seconds),
                            ("VODIMG_SESSION_ID_DAYS", self.session_id_days),
                            ("VODIMG_UPLOAD_SESSION_SECONDS", self.upload_session_seconds),
                            ("VODIMG_EVENT_LEASE_SECONDS", self.event_lease_seconds),
                            ("VODIMG_EVENT_POLL_SECONDS", self.event_poll_seconds),
                            ("VODIMG_PUSH_TIMEOUT_SECONDS", self.push_timeout_seconds),
                            ("VODIMG_PUSH_RETRY_SECONDS", self.push_retry_seconds)):
            if not value > 0:
                raise ConfigError(f"{name} must be a positive number")
        if self.event_wait_seconds < 0:
            raise ConfigError("VODIMG_EVENT_WAIT_SECONDS must be 0 or more")
        if not 1 <= self.push_concurrency <= 1000:
            raise ConfigError("VODIMG_PUSH_CONCURRENCY must be between 1 and 1000")
        if self.drain_seconds < 0:
            raise ConfigError("VODIMG_DRAIN_SECONDS must be 0 or more")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("--public-url (VODIMG_PUBLIC_URL) must start with http:// or https://")
        if self.rate_limit < 0:
            raise ConfigError("--rate-limit (VODIMG_RATE_LIMIT) must be >= 0 (0 switches it off)")
        self._check_s3()

    def _check_s3(self) -> None:
        if self.s3_addressing not in (None, "path", "virtual"):
            raise ConfigError("VODIMG_S3_ADDRESSING must be path or virtual")
        if self.s3_endpoint is not None and not self.s3_endpoint.startswith(("http://", "https://")):
            raise ConfigError("--s3-endpoint (VODIMG_S3_ENDPOINT) must start with http:// or https://")
        if not 1 <= self.s3_presign_seconds <= 604800:
            raise ConfigError("VODIMG_S3_PRESIGN_SECONDS must be between 1 and 604800 (7 days)")
        if self.s3_presigned_downloads and not self.storage_location.startswith("s3://"):
            raise ConfigError("VODIMG_S3_PRESIGNED_DOWNLOADS=on needs an s3:// --storage-url (VODIMG_STORAGE_URL)")


    @property
    def public_base(self) -> str:
        """The base of served file URLs (MediaUrl, FileUrl)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def storage_location(self) -> str:
        return self.storage_url or str(self.data_dir / "objects")

    @property
    def s3_options(self):
        from vodimg.objectstore import S3Options

        return S3Options(endpoint=self.s3_endpoint, addressing=self.s3_addressing)

    @property
    def presign_seconds(self) -> int | None:
        """How long a served file's presigned redirect is valid; None: files stream through us."""
        return self.s3_presign_seconds if self.s3_presigned_downloads else None

    @property
    def engine_process_count(self) -> int:
        if self.engine_processes is not None:
            return self.engine_processes
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(raw)
    return port


def _on_off(env: Any, var: str, default: bool) -> bool:
    value = env.get(var, "").strip().lower()
    if not value:
        return default
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{var}={value!r}: use on or off")


def _auth_from_env(env: Any) -> bool:
    value = env.get("VODIMG_AUTH", "on").strip().lower()
    if value in ("", "on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"VODIMG_AUTH={value!r}: use on or off")
