"""``vodimg serve --storage-url s3://...`` against moto's S3 server: a ProcessImageAsync task's
input and output live in the bucket, and the output is served through the file URL, streamed by
the server and, with ``VODIMG_S3_PRESIGNED_DOWNLOADS=on``, redirected to a presigned URL."""

from __future__ import annotations

import httpx
import pytest

from vodimg.engine import process_image
from tests.e2e.server import started
from tests.e2e.tasks import b64, create_template, small_photo_png, submit, wait_finished

pytestmark = pytest.mark.slow
JPEG_OUT = {"EncodeConfig": {"Format": "JPEG", "Quality": 85}}


@pytest.fixture(scope="module")
def s3_server(moto_s3, tmp_path_factory):
    bucket = moto_s3.new_bucket()
    server = started(tmp_path_factory.mktemp("s3-e2e") / "data",
                     extra_args=("--engine-processes", "1", "--storage-url", f"s3://{bucket}/media"),
                     extra_env=moto_s3.environment())
    server.bucket = bucket
    yield server
    server.stop()
    server.close_accounts()


def _finished_output(tenant) -> tuple[dict, bytes]:
    source = small_photo_png()
    answer, _ = wait_finished(tenant, submit(tenant, create_template(tenant, JPEG_OUT), Base64=b64(source)))
    task = answer["ProcessImageAsyncTask"]
    assert (task["Status"], task["ErrCode"]) == ("FINISH", 0), task
    return task["Output"]["FileInfo"], process_image(source, JPEG_OUT).data


def test_a_task_on_s3_storage_is_served_streamed_and_by_presigned_redirect(s3_server, moto_s3):
    tenant = s3_server.new_tenant()
    info, expected = _finished_output(tenant)
    keys = [item["Key"] for item in moto_s3.client().list_objects_v2(Bucket=s3_server.bucket)["Contents"]]
    assert keys and all(key.startswith("media/") for key in keys)
    url = info["FileUrl"]

    streamed = httpx.get(url)
    assert (streamed.status_code, streamed.headers["content-type"]) == (200, "image/jpeg")
    assert streamed.content == expected and streamed.headers["etag"] == f'"{info["MetaData"]["Md5"]}"'
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert (part.status_code, part.content) == (206, expected[10:20])

    s3_server.stop()
    s3_server.extra_env["VODIMG_S3_PRESIGNED_DOWNLOADS"] = "on"
    s3_server.start()
    redirect = httpx.get(url)
    assert redirect.status_code == 302 and redirect.headers["location"].startswith(moto_s3.endpoint + "/")
    assert redirect.headers["etag"] == streamed.headers["etag"]
    assert "no-store" in redirect.headers["cache-control"]
    followed = httpx.get(url, follow_redirects=True)
    assert (followed.status_code, followed.headers["content-type"], followed.content) == (200, "image/jpeg", expected)
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"}, follow_redirects=True)
    assert (ranged.status_code, ranged.content) == (206, expected[10:20])
    assert httpx.get(url, headers={"If-None-Match": streamed.headers["etag"]}).status_code == 304
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(expected))
    assert httpx.get(url.replace(info["FileId"], "1" * 19)).status_code == 404

    # A new task on the restarted server still writes to the bucket and is served the same way.
    info2, expected2 = _finished_output(tenant)
    assert httpx.get(info2["FileUrl"], follow_redirects=True).content == expected2
