"""Upload throughput and memory: vodimg's COS endpoint against moto's S3 server, in the same run.

    python -m bench.upload_throughput [--mb 10] [--runs 5] [--concurrent 8]

Needs the ``bench`` and ``test`` extras (moto's server, ``cos-python-sdk-v5``). Both servers get the
same client, ``cos-python-sdk-v5``, uploading the same 10 MB image from memory: ``put_object``
(one PUT) and ``upload_file`` (multipart with its defaults: 1 MB parts, 5 threads). vodimg runs ApplyUpload first
and its uploads are signed with the temporary key and checked; the client sends moto's uploads
unsigned (``CosConfig(Anonymous=True)``: moto fails on a COS signature, and checks none) in the S3
protocol, which COS's shares for these calls, and moto is told to take 1 MB parts
(``S3_UPLOAD_PART_MIN_SIZE``). Then ``--concurrent`` uploads of the same size at once
to vodimg, sampling the resident memory of the service's processes every 10 ms: the growth over
the idle service shows whether bodies stream (goal: under 50 MB for 8 x 10 MB).
Figures depend on the machine's load; the ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from qcloud_cos import CosConfig, CosS3Client

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET_ID, SECRET_KEY = "AKID" + "U" * 32, "u" * 32
MOTO_BUCKET = "bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def _image(megabytes: int) -> bytes:
    """A PNG of about ``megabytes`` MB (noise: it does not compress)."""
    import numpy as np
    import cv2

    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 0])[1].tobytes()


class Vodimg:
    def __init__(self, data_dir: Path, max_bytes: int):
        self.port = _free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("VODIMG_")},
               "VODIMG_SECRET_ID": SECRET_ID, "VODIMG_SECRET_KEY": SECRET_KEY, "VODIMG_RATE_LIMIT": "0",
               "VODIMG_MAX_INPUT_BYTES": str(max_bytes)}
        self.log = open(data_dir.parent / "vodimg.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vodimg", "serve", "--port", str(self.port), "--data-dir", str(data_dir),
             "--engine-processes", "0"], stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        _wait_port(self.port, self.process, "vodimg serve")
        from tencentcloud.common import credential
        from tencentcloud.common.common_client import CommonClient
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        self.api = CommonClient("vod", "2018-07-17", credential.Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou",
                                ClientProfile(httpProfile=HttpProfile(endpoint=f"127.0.0.1:{self.port}",
                                                                      protocol="http")))

    def target(self):
        """(client, bucket, key) for one upload."""
        applied = self.api.call_json("ApplyUpload", {"MediaType": "png"})["Response"]
        certificate = applied["TempCertificate"]
        client = CosS3Client(CosConfig(Region="ap-guangzhou", SecretId=certificate["SecretId"],
                                       SecretKey=certificate["SecretKey"], Token=certificate["Token"],
                                       Domain=f"127.0.0.1:{self.port}", Scheme="http"))
        return client, applied["StorageBucket"], applied["MediaStoragePath"]

    def rss(self) -> int:
        """Resident bytes of the service's processes (the server and its children)."""
        pids = [self.process.pid] + _children(self.process.pid)
        return sum(_rss(pid) for pid in pids)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Moto:
    def __init__(self, data_dir: Path):
        self.port = _free_port()
        env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(1024 * 1024)}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _wait_port(self.port, self.process, "moto_server")
        httpx.put(f"http://127.0.0.1:{self.port}/{MOTO_BUCKET}").raise_for_status()
        self.count = 0

    def target(self):
        self.count += 1
        client = CosS3Client(CosConfig(Region="ap-guangzhou", Anonymous=True, Domain=f"127.0.0.1:{self.port}",
                                       Scheme="http"))
        return client, MOTO_BUCKET, f"{MOTO_BUCKET}/upload-{self.count}.png"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found + [grandchild for child in found for grandchild in _children(child)]


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _upload(server, data: bytes, how: str, path: Path) -> float:
    client, bucket, key = server.target()
    start = time.perf_counter()
    if how == "put_object":
        client.put_object(Bucket=bucket, Key=key, Body=data)
    else:
        client.upload_file(Bucket=bucket, Key=key, LocalFilePath=str(path))  # defaults: 1 MB parts, 5 threads
    return time.perf_counter() - start


def _memory(vodimg: Vodimg, data: bytes, concurrent: int) -> tuple[int, int]:
    """(idle resident bytes, peak resident bytes during ``concurrent`` uploads at once)."""
    targets = [vodimg.target() for _ in range(concurrent)]
    time.sleep(0.5)
    idle, peak, done = vodimg.rss(), 0, threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, vodimg.rss())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client.put_object, kwargs={"Bucket": bucket, "Key": key, "Body": data})
               for client, bucket, key in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    sampler.join()
    return idle, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vodimg-bench-upload-"))
    data = _image(args.mb)
    path = work / "upload.png"
    path.write_bytes(data)
    megabytes = len(data) / 1e6
    vodimg = Vodimg(work / "data", max_bytes=len(data) + 1024)
    moto = Moto(work)
    try:
        rows = []
        for how in ("put_object", "upload_file"):
            best = {}
            for name, server in (("vodimg", vodimg), ("moto", moto)):
                _upload(server, data, how, path)  # warm-up
                best[name] = min(_upload(server, data, how, path) for _ in range(args.runs))
            rows.append((how, megabytes / best["vodimg"], megabytes / best["moto"]))
        idle, peak = _memory(vodimg, data, args.concurrent)
    finally:
        vodimg.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"upload of a {megabytes:.1f} MB image with cos-python-sdk-v5, best of {args.runs} "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores; figures depend on the load)")
    print(f"| call | vodimg MB/s | moto_server MB/s | ratio |\n|---|---|---|---|")
    for how, ours, theirs in rows:
        print(f"| {how} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")
    growth = (peak - idle) / 1e6
    print(f"\n{args.concurrent} concurrent {megabytes:.1f} MB uploads: service resident memory {idle / 1e6:.0f} MB idle, "
          f"{peak / 1e6:.0f} MB peak, growth {growth:.1f} MB (goal: under 50 MB)")


if __name__ == "__main__":
    main()
