"""API throughput: vodimg against moto's server, measured in the same run.

    python -m bench.api_throughput [--seconds 10] [--connections 8] [--workers 1]

Needs ``wrk`` (Debian package ``wrk``) and the ``bench`` extra (``pip install -e .[bench]``).
Every request carries a real TC3-HMAC-SHA256 signature that the server verifies (TC3 has no nonce,
so one signed request can be replayed within its 300-second window, which is what wrk does).
Baseline: moto's server (``moto_server``) answering DynamoDB ListTables, a comparable signed JSON
read call, with the same client, connections and duration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from vodimg.wire.signature import sign_tc3, tc3_string_to_sign

SECRET_ID = "AKID" + "B" * 32
SECRET_KEY = "k" * 32
SUB_APP_ID = 1500000001


@dataclass
class SignedRequest:
    url: str
    headers: dict[str, str]
    body: str


def tc3_request(port: int, action: str, params: dict) -> SignedRequest:
    """A request signed as the official SDK signs it (content-type;host)."""
    body = json.dumps(params)
    timestamp = int(time.time())
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    host = f"127.0.0.1:{port}"
    content_type = "application/json"
    signed_headers = "content-type;host"
    canonical_headers = f"content-type:{content_type}\nhost:{host}\n"
    string_to_sign = tc3_string_to_sign(
        "POST", "", canonical_headers, signed_headers,
        hashlib.sha256(body.encode()).hexdigest(), str(timestamp), date, "vod",
    )
    signature = sign_tc3(SECRET_KEY, date, "vod", string_to_sign)
    headers = {
        "Content-Type": content_type,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": "2018-07-17",
        "X-TC-Region": "ap-guangzhou",
        "X-TC-Timestamp": str(timestamp),
        "Authorization": (f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/vod/tc3_request, "
                          f"SignedHeaders={signed_headers}, Signature={signature}"),
    }
    return SignedRequest(f"http://{host}/", headers, body)


def moto_request(port: int) -> SignedRequest:
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    url = f"http://127.0.0.1:{port}/"
    request = botocore.awsrequest.AWSRequest(
        method="POST", url=url, data=b"{}",
        headers={"Content-Type": "application/x-amz-json-1.0",
                 "X-Amz-Target": "DynamoDB_20120810.ListTables"},
    )
    credentials = botocore.credentials.Credentials("AKIDEXAMPLE", "secret")
    botocore.auth.SigV4Auth(credentials, "dynamodb", "us-east-1").add_auth(request)
    return SignedRequest(url, dict(request.headers), "{}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def start_vodimg(data_dir: Path, port: int, workers: int) -> subprocess.Popen:
    env = dict(os.environ, VODIMG_SECRET_ID=SECRET_ID, VODIMG_SECRET_KEY=SECRET_KEY,
               VODIMG_SUBAPP_ID=str(SUB_APP_ID), VODIMG_RATE_LIMIT="0")
    command = [sys.executable, "-m", "vodimg", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir), "--log-level", "warning"]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def start_moto(port: int) -> subprocess.Popen:
    moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    process = subprocess.Popen([moto, "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def call(request: SignedRequest) -> dict:
    response = httpx.post(request.url, headers=request.headers, content=request.body)
    return response.json()


def wrk_script(request: SignedRequest, directory: Path, name: str) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(request.body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
              for k, v in request.headers.items() if k.lower() != "host"]
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(request: SignedRequest, script: Path, seconds: int, connections: int) -> dict:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         request.url], capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError("wrk saw errors:\n" + output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": _latency_ms(output, "50%"),
        "p99": _latency_ms(output, "99%"),
    }


def _latency_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"{re.escape(percentile)}\s+([\d.]+)(us|ms|s)", output).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def prepare_vodimg(port: int) -> dict[str, SignedRequest]:
    """Twenty custom templates, then the two requests to replay."""
    configure = {"EncodeConfig": {"Format": "JPEG", "Quality": 90},
                 "EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 0.5}}}
    definition = None
    for index in range(20):
        answer = call(tc3_request(port, "CreateProcessImageAsyncTemplate",
                                  {"Name": f"bench-{index}", "ProcessImageConfigure": configure}))
        definition = answer["Response"]["Definition"]
    describe = tc3_request(port, "DescribeProcessImageAsyncTemplates", {"Limit": 10})
    modify = tc3_request(port, "ModifyProcessImageAsyncTemplate",
                         {"Definition": definition, "Comment": "benchmarked",
                          "ProcessImageConfigure": {"EnhanceConfig": {
                              "ColorEnhance": {"Switch": "ON", "Type": "normal"}}}})
    for request in (describe, modify):
        answer = call(request)["Response"]
        if "Error" in answer:
            raise RuntimeError(f"{request.headers['X-TC-Action']} failed: {answer['Error']}")
    return {"DescribeProcessImageAsyncTemplates": describe,
            "ModifyProcessImageAsyncTemplate": modify}


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="vodimg API processes")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        moto_port, vod_port = free_port(), free_port()
        moto = start_moto(moto_port)
        try:
            baseline_request = moto_request(moto_port)
            assert "TableNames" in call(baseline_request)
            baseline = run_wrk(baseline_request, wrk_script(baseline_request, tmp_path, "moto"),
                               args.seconds, args.connections)
        finally:
            moto.terminate()
            moto.wait()
        rows.append(("moto_server DynamoDB ListTables (baseline)", baseline))
        server = start_vodimg(tmp_path / "data", vod_port, args.workers)
        try:
            for action, request in prepare_vodimg(vod_port).items():
                result = run_wrk(request, wrk_script(request, tmp_path, action),
                                 args.seconds, args.connections)
                rows.append((f"vodimg {action}", result))
        finally:
            server.terminate()
            server.wait()

    print(f"machine: {machine()}")
    print(f"client: wrk, 1 thread, {args.connections} connections, {args.seconds} s each; "
          f"vodimg API processes: {args.workers}")
    print(f"{'call':<52} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x moto':>7}")
    for name, result in rows:
        ratio = result["rps"] / baseline["rps"]
        print(f"{name:<52} {result['rps']:>9.0f} {result['p50']:>8.2f} {result['p99']:>8.2f} "
              f"{ratio:>7.2f}")


if __name__ == "__main__":
    main()
