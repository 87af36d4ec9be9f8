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
        if self.rate_limit < 0:
            raise ConfigError("--rate-limit (VODIMG_RATE_LIMIT) must be >= 0 (0 switches it off)")


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(raw)
    return port


def _auth_from_env(env: Any) -> bool:
    value = env.get("VODIMG_AUTH", "on").strip().lower()
    if value in ("", "on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"VODIMG_AUTH={value!r}: use on or off")
