"""A real ``vodimg serve`` in a subprocess on loopback, and official SDK clients pointed at it.

Used by the wire tests and the end-to-end tests (fixtures in their conftest files).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.vod.v20180717 import vod_client

START_TIMEOUT = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def vodimg_command() -> list[str]:
    """``vodimg`` as a subprocess command line (the installed entry point's module)."""
    return [sys.executable, "-m", "vodimg"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_key() -> tuple[str, str]:
    alphabet = string.ascii_letters + string.digits
    return ("AKID" + "".join(secrets.choice(alphabet) for _ in range(32)),
            "".join(secrets.choice(alphabet) for _ in range(32)))


@dataclass
class Server:
    """One ``vodimg serve`` process; ``stop()``/``start()`` keep the data directory and ports."""
    data_dir: Path
    secret_id: str | None = None
    secret_key: str | None = None
    database_url: str | None = None
    tls: bool = False
    extra_args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    tls_port: int | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    _database: object = None

    def __post_init__(self) -> None:
        if self.tls and self.tls_port is None:
            self.tls_port = free_port()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}/"

    def command(self) -> list[str]:
        command = [*vodimg_command(), "serve", "--port", str(self.port),
                   "--data-dir", str(self.data_dir)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        if self.tls_port:
            command += ["--tls-port", str(self.tls_port)]
        return command + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VODIMG_")}
        env["VODIMG_RATE_LIMIT"] = "0"
        if self.secret_id:
            env["VODIMG_SECRET_ID"], env["VODIMG_SECRET_KEY"] = self.secret_id, self.secret_key
        env.update(self.extra_env)
        return env

    def start(self) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-serve-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            env=self.environment(), cwd=REPO_ROOT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vodimg serve exited with {self.process.returncode}:\n{self.output()}")
            if "vodimg: API endpoint" in self.output():
                try:
                    httpx.post(self.url, content=b"{}", timeout=2.0)
                    return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"vodimg serve did not answer within {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path else ""

    def printed_key(self) -> dict | None:
        """The key JSON printed on first start, if any."""
        for line in self.output().splitlines():
            if line.startswith("{") and "SecretKey" in line:
                return json.loads(line)
        return None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # -- accounts, made directly in the server's database (the server sees new keys at once) ----

    def accounts(self):
        from vodimg.domain.accounts import AccountService
        from vodimg.storage.db import Database, sqlite_url

        if self._database is None:
            self._database = Database(self.database_url or sqlite_url(self.data_dir))
        return AccountService(self._database)

    def close_accounts(self) -> None:
        if self._database is not None:
            self._database.dispose()
            self._database = None

    def new_tenant(self) -> "Tenant":
        created = self.accounts().create_account()
        return Tenant(self, created["AppId"], created["SubAppId"], created["SecretId"], created["SecretKey"])

    # -- official SDK clients ----------------------------------------------------------------------

    def profile(self, sign_method: str = "TC3-HMAC-SHA256", req_method: str = "POST",
                https: bool = False, certification: str | None = None, unsigned: bool = False) -> ClientProfile:
        port = self.tls_port if https else self.port
        http_profile = HttpProfile(endpoint=f"127.0.0.1:{port}", protocol="https" if https else "http",
                                   reqMethod=req_method, reqTimeout=30, certification=certification)
        profile = ClientProfile(httpProfile=http_profile, signMethod=sign_method)
        profile.unsignedPayload = unsigned
        return profile

    def credential(self, secret_id: str | None = None, secret_key: str | None = None):
        return credential.Credential(secret_id or self.secret_id, secret_key or self.secret_key)

    def vod(self, secret_id: str | None = None, secret_key: str | None = None, **profile) -> vod_client.VodClient:
        return vod_client.VodClient(self.credential(secret_id, secret_key), "ap-guangzhou", self.profile(**profile))

    def common(self, version: str = "2018-07-17", secret_id: str | None = None, secret_key: str | None = None,
               **profile) -> CommonClient:
        return CommonClient("vod", version, self.credential(secret_id, secret_key), "ap-guangzhou",
                            self.profile(**profile))


@dataclass
class Tenant:
    """One account on a server, with SDK clients signed by its key."""
    server: Server
    app_id: int
    sub_app_id: int
    secret_id: str
    secret_key: str

    def vod(self, **profile) -> vod_client.VodClient:
        return self.server.vod(self.secret_id, self.secret_key, **profile)

    def common(self, **profile) -> CommonClient:
        return self.server.common(secret_id=self.secret_id, secret_key=self.secret_key, **profile)

    def call(self, action: str, params: dict, **profile) -> dict:
        """The ``Response`` of ``action`` through the SDK's CommonClient (raises on an error)."""
        return self.common(**profile).call_json(action, params)["Response"]

    def add_application(self) -> int:
        return self.server.accounts().create_application(self.app_id)["SubAppId"]


def started(data_dir: Path, **options) -> Server:
    """A started server whose default account has a fresh key given by environment
    (``Server(...).start()`` without a key lets the server generate and print one)."""
    if "secret_id" not in options:
        options["secret_id"], options["secret_key"] = new_key()
    return Server(data_dir, **options).start()
