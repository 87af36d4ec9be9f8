"""Crash safety of uploads, proven by killing ``vodimg serve`` with SIGKILL (DESIGN.md 4, 5):

- during a multipart upload (a part half sent): after a restart no half media file is visible,
  the parts uploaded before the kill are still listed, and the upload completes;
- during a PullUpload (the URL half fetched): after a restart the task finishes once, with one
  media row, one stored object and one PullComplete event.
"""

from __future__ import annotations

import http.server
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
from qcloud_cos.cos_exception import CosServiceError
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from tests.e2e.media import apply, commit, cos_client, database, events_of, noisy_png, wait_pull
from tests.e2e.server import started
from vodimg.storage.schema import media, tasks

pytestmark = pytest.mark.slow


def _kill(server) -> None:
    server.process.kill()
    server.process.wait()
    server.process = None


def test_kill_9_during_a_multipart_upload_then_restart(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "0"))
    try:
        tenant = server.new_tenant()
        applied = apply(tenant, "png")
        client = cos_client(server, applied)
        bucket, key = applied["StorageBucket"], applied["MediaStoragePath"]
        data = noisy_png(1000)  # three parts: 1 MB, 1 MB, the rest
        parts = [data[:2**20], data[2**20:2**21], data[2**21:]]
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etags = {}
        for number in (1, 2):
            answer = client.upload_part(Bucket=bucket, Key=key, Body=parts[number - 1], PartNumber=number,
                                        UploadId=upload_id)
            etags[number] = {name.lower(): value for name, value in answer.items()}["etag"]

        params = {"partNumber": "3", "uploadId": upload_id}
        auth = client.get_auth("PUT", bucket, key, Params=params)
        half_sent = threading.Event()

        def slow_body():
            yield parts[2][:100_000]
            half_sent.set()
            time.sleep(30)
            yield parts[2][100_000:]

        def send_slowly():
            try:
                httpx.put(f"http://{server.endpoint}{key}", params=params, content=slow_body(), timeout=60,
                          headers={"Authorization": auth, "x-cos-security-token": applied["TempCertificate"]["Token"]})
            except httpx.HTTPError:
                pass  # the server died under it

        sender = threading.Thread(target=send_slowly, daemon=True)
        sender.start()
        assert half_sent.wait(10)
        time.sleep(0.5)
        _kill(server)
        server.start()

        with pytest.raises(CosServiceError) as missing:
            client.head_object(Bucket=bucket, Key=key)
        assert missing.value.get_status_code() == 404
        with pytest.raises(TencentCloudSDKException) as refused:
            commit(tenant, applied)
        assert refused.value.get_code() == "FailedOperation"
        listed = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
        assert [int(part["PartNumber"]) for part in listed["Part"]] == [1, 2]

        answer = client.upload_part(Bucket=bucket, Key=key, Body=parts[2], PartNumber=3, UploadId=upload_id)
        etags[3] = {name.lower(): value for name, value in answer.items()}["etag"]
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
            "Part": [{"PartNumber": number, "ETag": etag} for number, etag in sorted(etags.items())]})
        assert httpx.get(commit(tenant, applied)["MediaUrl"]).content == data
    finally:
        server.stop()
        server.close_accounts()


class _TricklingHost:
    """Serves one PNG on 127.0.0.2, slowly (a few seconds), counting requests."""

    def __init__(self, body: bytes, seconds: float):
        host = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                host.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                step = len(body) // 20 + 1
                try:
                    for start in range(0, len(body), step):
                        self.wfile.write(body[start:start + step])
                        self.wfile.flush()
                        time.sleep(seconds / 20)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}/slow-photo.png"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_kill_9_during_a_pull_upload_then_restart_finishes_it_once(tmp_path):
    body = noisy_png(300)
    host = _TricklingHost(body, seconds=4)
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"),
                     extra_env={"VODIMG_URL_ALLOW": "127.0.0.2/32", "VODIMG_TASK_LEASE_SECONDS": "2"})
    try:
        tenant = server.new_tenant()
        task_id = tenant.call("PullUpload", {"SubAppId": tenant.sub_app_id, "MediaUrl": host.url})["TaskId"]
        deadline = time.monotonic() + 20
        while host.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert host.requests == 1
        time.sleep(1)  # half way through the body
        _kill(server)
        server.start()
        task = wait_pull(tenant, task_id, timeout=90)["PullUploadTask"]
        assert task["ErrCode"] == 0, task["Message"]
        assert httpx.get(task["FileUrl"]).content == body
        with database(server).read() as conn:
            media_rows = conn.execute(sa.select(media.c.file_id).where(media.c.sub_app_id == tenant.sub_app_id)).all()
            attempt = conn.execute(sa.select(tasks.c.attempt).where(tasks.c.task_id == task_id)).scalar()
        assert [row[0] for row in media_rows] == [task["FileId"]] and attempt == 2
        assert [kind for kind, _ in events_of(server, tenant.sub_app_id)] == ["PullComplete"]
        stored = list((server.data_dir / "objects" / "pulls" / str(tenant.sub_app_id)).iterdir())
        assert [path.name for path in stored if not path.name.startswith(".")] == [task_id]
    finally:
        server.stop()
        server.close_accounts()
        host.stop()
