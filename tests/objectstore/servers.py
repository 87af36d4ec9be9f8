"""S3 servers for the tests, started on loopback for the test session: moto's server (fast, no
signature checks) and OpenStack Swift with its s3api middleware (checks SigV4 signatures).

Swift comes from PyPI (``swift``, pinned below) into a virtual environment cached under
``~/.cache/vodimg-tests`` (``VODIMG_TEST_CACHE``), about 45 s the first time; the server itself
is started by the shared script ``shared/tools/swift-s3.sh`` (found beside the repository or one
of its parents), about 10 s.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SWIFT_VERSION = "2.38.3"
SWIFT_SCRIPT = Path("shared/tools/swift-s3.sh")
START_SECONDS = 30.0


def unavailable(reason: str):
    """Skip with the reason; under CI (``CI=true``) a server that cannot start is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the S3 servers are required)")
    pytest.skip(reason)


@dataclass
class S3Server:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    checks_signatures: bool
    region: str = "us-east-1"
    buckets: list[str] = field(default_factory=list)

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        config = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region, config=config,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)

    def environment(self) -> dict[str, str]:
        """What a ``vodimg`` subprocess needs to reach this server through the AWS variables."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region}

    def new_bucket(self) -> str:
        name = f"vodimg-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is up
    except OSError:
        return False


def start_moto(log_dir: Path):
    """(S3Server, stop) for a moto server in a subprocess on a free loopback port."""
    try:
        import moto.server  # noqa: F401 - the [server] extra must be installed
    except ImportError as error:
        unavailable(f"moto[server] is not installed: {error}")
    port = free_port()
    log = open(log_dir / "moto.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()

    deadline = time.monotonic() + START_SECONDS
    while not _answers(f"http://127.0.0.1:{port}/moto-api/"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop()
            unavailable(f"moto server did not start: {(log_dir / 'moto.log').read_text()[-500:]}")
        time.sleep(0.1)
    return S3Server("moto", f"http://127.0.0.1:{port}", "testing", "testing", checks_signatures=False), stop


def _swift_script() -> Path | None:
    for directory in REPO_ROOT.parents:
        if (directory / SWIFT_SCRIPT).is_file():
            return directory / SWIFT_SCRIPT
    return None


def _swift_python() -> Path:
    """The Python of a venv with swift installed, made once and kept in the cache."""
    cache = Path(os.environ.get("VODIMG_TEST_CACHE") or Path.home() / ".cache" / "vodimg-tests")
    venv = cache / f"swift-{SWIFT_VERSION}"
    python = venv / "bin" / "python"
    if (venv / ".installed").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    for command in ([_base_python(), "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", "-q", f"swift=={SWIFT_VERSION}"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            unavailable(f"could not install swift=={SWIFT_VERSION}: {(done.stderr or done.stdout)[-800:]}")
    (venv / ".installed").touch()
    return python


def _base_python() -> str:
    """The interpreter our venv was made from (swift gets a venv of its own)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def start_swift(work_dir: Path):
    """(S3Server, stop) for Swift with s3api on loopback (4 processes, ~230 MB)."""
    script = _swift_script()
    if script is None:
        unavailable(f"{SWIFT_SCRIPT} not found beside the repository or its parents")
    python = _swift_python()
    for _ in range(20):  # the proxy's port and the three servers' at port+100..102 must be free
        port = free_port()
        if all(_port_free(port + offset) for offset in (100, 101, 102)) and port + 102 < 65536:
            break
    env = {**os.environ, "SWIFT_PY": str(python)}

    def stop() -> None:
        subprocess.run(["bash", str(script), "stop", str(work_dir)], env=env, capture_output=True, timeout=30)

    done = subprocess.run(["bash", str(script), "start", str(work_dir), str(port)], env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        stop()
        unavailable(f"swift did not start: {(done.stderr or done.stdout)[-800:]}")
    fields = dict(item.split("=", 1) for item in done.stdout.split())
    return S3Server("swift", fields["endpoint"], fields["access"], fields["secret"], checks_signatures=True,
                    region=fields["region"]), stop


class RefusingConditionsProxy:
    """An HTTP proxy on loopback in front of an S3 server that answers 501 NotImplemented to every
    write carrying ``If-None-Match``, as servers without conditional writes do (for moto, which
    does not check signatures, so the proxy's forwarding breaks nothing)."""

    NOT_IMPLEMENTED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
                       b"<Message>A header you provided implies functionality that is not implemented"
                       b"</Message></Error>")

    def __init__(self, upstream: str):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit

        target = urlsplit(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command in ("PUT", "POST") and "If-None-Match" in self.headers:
                    proxy.refused += 1
                    self._answer(501, {"Content-Type": "application/xml"}, proxy.NOT_IMPLEMENTED)
                    return
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    connection.request(self.command, self.path, body, dict(self.headers))
                    answer = connection.getresponse()
                    data = answer.read()
                    headers = {k: v for k, v in answer.getheaders() if k.lower() not in ("transfer-encoding", "connection")}
                    self._answer(answer.status, headers, data)
                finally:
                    connection.close()

            def _answer(self, status: int, headers: dict, data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.refused = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
