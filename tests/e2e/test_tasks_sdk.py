"""ProcessImageAsync end to end through the official SDK against ``vodimg serve`` on loopback, on
SQLite and PostgreSQL: inputs (Base64, Url, FileId), status and progress, served outputs, every
bad input, DescribeTasks paging and priority order.

Test images are served from 127.0.0.2, the only address the servers allow (``VODIMG_URL_ALLOW``):
127.0.0.1, localhost and every other refused class stay refused.
"""

from __future__ import annotations

import re
import threading

import httpx
import numpy as np
import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.vod.v20180717 import models

from vodimg.domain.presets import PRESETS
from vodimg.engine import process_image
from tests.e2e.imagehost import ImageHost
from tests.e2e.cluster import backend_server
from tests.engine.images import encode
from tests.e2e.tasks import (
    animated_gif, b64, create_template, png_bomb, small_photo_jpeg, small_photo_png, submit, wait_finished,
)

pytestmark = pytest.mark.slow
JPEG_OUT = {"EncodeConfig": {"Format": "JPEG", "Quality": 85}}
# Seconds per image on this machine: super-resolution of a noisy photo.
SLOW = {"EnhanceConfig": {"Denoise": {"Switch": "ON", "Type": "strong"},
                          "SuperResolution": {"Switch": "ON", "Type": "lq", "Size": 2}}}
TASK_ID = re.compile(r"^(\d+)-ProcessImageAsync-[0-9a-f]{32}t$")


@pytest.fixture(scope="module")
def images():
    host = ImageHost(files={
        "/photo.png": small_photo_png(), "/photo.jpg": small_photo_jpeg(), "/corrupt.jpg": b"\xff\xd8\xff\xe0 not a jpeg",
        "/truncated.jpg": small_photo_jpeg()[:400], "/animated.gif": animated_gif(), "/bomb.png": png_bomb(),
    }).start()
    yield host
    host.stop()


TASK_ENV = {"VODIMG_URL_ALLOW": "127.0.0.2/32", "VODIMG_URL_TIMEOUT_SECONDS": "2"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("cluster", marks=pytest.mark.postgres)])
def task_server(request, tmp_path_factory):
    with backend_server(request, tmp_path_factory, "tasks", TASK_ENV) as server:
        yield server


@pytest.fixture
def tenant(task_server):
    return task_server.new_tenant()


def _noisy_png(side: int) -> bytes:
    noisy = np.clip(np.random.default_rng(side).normal(128, 40, (side, side, 3)), 0, 255).astype(np.uint8)
    return encode(noisy, ".png")


def _error(call) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as raised:
        call()
    return raised.value


# -- the whole flow -------------------------------------------------------------------------------

def test_base64_task_runs_to_finish_and_its_output_is_served_byte_for_byte(tenant):
    source = small_photo_png()
    definition = create_template(tenant, JPEG_OUT)
    task_id = submit(tenant, definition, Base64=b64(source), SessionContext="ctx-1",
                     OutputConfig={"MediaName": "my output", "ClassId": 3})
    assert TASK_ID.match(task_id).group(1) == str(tenant.sub_app_id)
    answer, _seen = wait_finished(tenant, task_id)
    task = answer["ProcessImageAsyncTask"]
    assert (answer["TaskType"], task["Status"], task["ErrCode"], task["Progress"]) == ("ProcessImageAsync", "FINISH", 0, 100)
    assert answer["PullUploadTask"] is None and answer["FinishTime"] >= answer["BeginProcessTime"] >= answer["CreateTime"]
    assert task["SessionContext"] == "ctx-1"
    info = task["Output"]["FileInfo"]
    expected = process_image(source, JPEG_OUT)
    assert (info["FileType"], info["MediaName"], info["ClassId"]) == ("jpg", "my output", 3)
    meta = info["MetaData"]
    assert (meta["Width"], meta["Height"], meta["Size"], meta["Container"]) == (64, 64, expected.size, "jpeg")
    assert re.fullmatch(r"\d{19}", info["FileId"])
    served = httpx.get(info["FileUrl"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.content == expected.data
    assert served.headers["etag"] == f'"{meta["Md5"]}"'


def test_the_typed_sdk_models_read_the_task(tenant):
    definition = create_template(tenant, JPEG_OUT)
    request = models.ProcessImageAsyncRequest()
    request.from_json_string(f'{{"SubAppId": {tenant.sub_app_id}, "Base64": "{b64(small_photo_png())}", '
                             f'"ImageTaskInput": {{"Definition": {definition}}}}}')
    task_id = tenant.vod().ProcessImageAsync(request).TaskId
    wait_finished(tenant, task_id)
    detail = models.DescribeTaskDetailRequest()
    detail.from_json_string(f'{{"TaskId": "{task_id}", "SubAppId": {tenant.sub_app_id}}}')
    typed = tenant.vod().DescribeTaskDetail(detail)
    assert typed.Status == "FINISH"
    assert typed.ProcessImageAsyncTask.Output.FileInfo.MetaData.Width == 64


def test_url_and_file_id_inputs_and_a_preset(tenant, images):
    definition = create_template(tenant, {"EncodeConfig": {"Format": "PNG"}})
    first, _ = wait_finished(tenant, submit(tenant, definition, Url=images.url("/photo.jpg")))
    info = first["ProcessImageAsyncTask"]["Output"]["FileInfo"]
    assert first["ProcessImageAsyncTask"]["Input"]["Url"] == images.url("/photo.jpg")
    assert info["FileType"] == "png" and info["MediaName"] == "photo"
    preset = next(p.definition for p in PRESETS if (p.configure.get("EncodeConfig") or {}).get("Format") == "WebP")
    second, _ = wait_finished(tenant, submit(tenant, preset, FileId=info["FileId"]))
    out = second["ProcessImageAsyncTask"]["Output"]["FileInfo"]
    assert second["ProcessImageAsyncTask"]["ErrCode"] == 0, second
    assert out["FileType"] == "webp" and httpx.get(out["FileUrl"]).content[8:12] == b"WEBP"
    listed = tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "FileId": info["FileId"]})["TaskSet"]
    assert [item["TaskId"] for item in listed] == [second["ProcessImageAsyncTask"]["TaskId"]]


def test_waiting_then_processing_with_rising_progress_then_finish(tenant, task_server):
    slow = create_template(tenant, SLOW)
    blocker = submit(tenant, slow, Base64=b64(_noisy_png(600)))
    queued = submit(tenant, slow, Base64=b64(_noisy_png(200)))
    results = {}
    watchers = [threading.Thread(target=lambda t=t: results.__setitem__(t, wait_finished(tenant, t, 120))) for t in (blocker, queued)]
    for watcher in watchers:
        watcher.start()
    for watcher in watchers:
        watcher.join()
    statuses = [status for status, _ in results[queued][1]]
    one_engine = getattr(task_server, "cluster", None) is None  # two workers take both tasks at once
    assert statuses[0] == ("WAITING" if one_engine else statuses[0]) and statuses[-1] == "FINISH"
    assert "PROCESSING" in statuses
    progress = [p for status, p in results[blocker][1] if status == "PROCESSING"]
    assert len(set(progress)) >= 2 and progress == sorted(progress) and progress[-1] < 100


def test_a_deleted_template_still_runs_from_the_tasks_snapshot(tenant):
    definition = create_template(tenant, {"EncodeConfig": {"Format": "BMP"}})
    task_id = submit(tenant, definition, Base64=b64(small_photo_png()))
    tenant.call("DeleteProcessImageAsyncTemplate", {"SubAppId": tenant.sub_app_id, "Definition": definition})
    answer, _ = wait_finished(tenant, task_id)
    assert answer["ProcessImageAsyncTask"]["Output"]["FileInfo"]["FileType"] == "bmp"


# -- served files ------------------------------------------------------------------------------------

def test_served_files_answer_range_etag_head_and_404(tenant):
    answer, _ = wait_finished(tenant, submit(tenant, create_template(tenant, JPEG_OUT), Base64=b64(small_photo_png())))
    info = answer["ProcessImageAsyncTask"]["Output"]["FileInfo"]
    url, whole = info["FileUrl"], httpx.get(info["FileUrl"]).content
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(whole)}"
    assert httpx.get(url, headers={"Range": "bytes=-5"}).content == whole[-5:]
    assert httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}).status_code == 416
    etag = httpx.get(url).headers["etag"]
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(whole)) and head.content == b""
    other_app = url.replace(f"/files/{tenant.sub_app_id}/", "/files/1234567/")
    assert httpx.get(other_app).status_code == 404
    assert httpx.get(url.replace(info["FileId"], "1" * 19)).status_code == 404


# -- bad input, refused at once (nothing stored) -------------------------------------------------------

def _count_tasks(tenant) -> int:
    return len(tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "Limit": 100})["TaskSet"])


REFUSED_URLS = [
    "file:///etc/passwd", "ftp://127.0.0.2/x.png", "gopher://127.0.0.2/x", "http://127.0.0.1:1/x.png",
    "http://localhost/x.png", "http://[::1]/x.png", "http://10.0.0.1/x.png", "http://169.254.169.254/latest/meta-data",
    "http://[::ffff:127.0.0.1]/x.png",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_refused_urls_answer_invalid_parameter_value_url(tenant, url):
    definition = create_template(tenant, JPEG_OUT)
    error = _error(lambda: submit(tenant, definition, Url=url))
    assert error.code == "InvalidParameterValue.Url", error
    assert _count_tasks(tenant) == 0


def test_bad_requests_get_their_documented_codes_and_store_nothing(tenant, task_server):
    definition = create_template(tenant, JPEG_OUT)
    image = b64(small_photo_png())
    other = task_server.new_tenant()
    other_definition = create_template(other, JPEG_OUT)
    cases = [
        ({}, "MissingParameter"),
        ({"Base64": image, "Url": "http://127.0.0.2/x.png"}, "InvalidParameterValue"),
        ({"Base64": "not base64!!"}, "InvalidParameterValue.ImageDecodeError"),
        ({"Base64": "data:image/png;base64," + image}, "InvalidParameterValue.ImageDecodeError"),
        ({"Base64": b64(b"\0" * (4 * 1024 * 1024))}, "InvalidParameterValue"),
        ({"Base64": image, "ImageTaskInput": {"Definition": 99999999}}, "ResourceNotFound.TemplateNotExist"),
        ({"Base64": image, "ImageTaskInput": {"Definition": other_definition}}, "ResourceNotFound.TemplateNotExist"),
        ({"Base64": image, "SessionId": "s" * 51}, "InvalidParameterValue.SessionIdTooLong"),
        ({"Base64": image, "SessionContext": "c" * 1001}, "InvalidParameterValue.SessionContextTooLong"),
        ({"Base64": image, "TasksPriority": 11}, "InvalidParameterValue"),
        ({"Base64": image, "TasksPriority": -11}, "InvalidParameterValue"),
        ({"Base64": image, "OutputConfig": {"ExpireTime": "2020-01-01T00:00:00Z"}}, "InvalidParameterValue.ExpireTime"),
        ({"Base64": image, "OutputConfig": {"ExpireTime": "tomorrow"}}, "InvalidParameterValue.ExpireTime"),
        ({"Base64": image, "OutputConfig": {"MediaName": "n" * 65}}, "InvalidParameterValue"),
        ({"FileId": "1234567890123456789"}, "InvalidParameterValue.FileId"),
        ({"FileId": "../../etc"}, "InvalidParameterValue.FileId"),
    ]
    for params, code in cases:
        request = {"SubAppId": tenant.sub_app_id, "ImageTaskInput": {"Definition": definition}, **params}
        error = _error(lambda: tenant.call("ProcessImageAsync", request))
        assert error.code == code, (params.keys(), error)
    assert _count_tasks(tenant) == 0


def test_a_file_id_of_another_application_is_refused(tenant, task_server):
    other = task_server.new_tenant()
    answer, _ = wait_finished(other, submit(other, create_template(other, JPEG_OUT), Base64=b64(small_photo_png())))
    foreign = answer["ProcessImageAsyncTask"]["Output"]["FileInfo"]["FileId"]
    error = _error(lambda: submit(tenant, create_template(tenant, JPEG_OUT), FileId=foreign))
    assert error.code == "InvalidParameterValue.FileId"
    task_id = answer["ProcessImageAsyncTask"]["TaskId"]
    error = _error(lambda: tenant.call("DescribeTaskDetail", {"TaskId": task_id, "SubAppId": tenant.sub_app_id}))
    assert error.code == "InvalidParameterValue.TaskId"


def test_a_repeated_session_id_is_refused(tenant):
    definition = create_template(tenant, JPEG_OUT)
    submit(tenant, definition, Base64=b64(small_photo_png()), SessionId="order-42")
    error = _error(lambda: submit(tenant, definition, Base64=b64(small_photo_png()), SessionId="order-42"))
    assert error.code == "InvalidParameterValue.SessionId"
    assert _count_tasks(tenant) == 1


# -- bad sources: the task reaches FINISH with ErrCode 60000 ---------------------------------------------

SOURCE_FAILURES = [
    ("/corrupt.jpg", "not"), ("/truncated.jpg", ""), ("/animated.gif", "anim"), ("/bomb.png", "pixel"),
    ("/missing.png", "404"), ("/slow", "time"), ("/huge", "larger"),
    ("/redirect?to=http://127.0.0.1:9/x.png", "loopback"),
]


@pytest.mark.parametrize("path, words", SOURCE_FAILURES)
def test_bad_sources_finish_with_60000_and_a_message(tenant, images, path, words):
    answer, _ = wait_finished(tenant, submit(tenant, create_template(tenant, JPEG_OUT), Url=images.url(path)), 30)
    task = answer["ProcessImageAsyncTask"]
    assert (task["ErrCode"], task["Output"]) == (60000, None), task
    assert words.lower() in task["Message"].lower(), task["Message"]


def test_an_unreachable_url_finishes_with_60000(tenant):
    import socket

    with socket.socket() as sock:  # a port on 127.0.0.2 with nothing listening
        sock.bind(("127.0.0.2", 0))
        port = sock.getsockname()[1]
    answer, _ = wait_finished(tenant, submit(tenant, create_template(tenant, JPEG_OUT), Url=f"http://127.0.0.2:{port}/x.png"))
    assert answer["ProcessImageAsyncTask"]["ErrCode"] == 60000
    assert "connect" in answer["ProcessImageAsyncTask"]["Message"].lower()


# -- DescribeTasks ------------------------------------------------------------------------------------------

def test_describe_tasks_pages_without_repeats_or_gaps_while_tasks_are_added(tenant):
    definition = create_template(tenant, JPEG_OUT)
    image = b64(small_photo_png(16))
    first = [submit(tenant, definition, Base64=image) for _ in range(25)]
    seen, token, added = [], "", []
    while True:
        page = tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "Limit": 7, "ScrollToken": token}
                           if token else {"SubAppId": tenant.sub_app_id, "Limit": 7})
        seen += [item["TaskId"] for item in page["TaskSet"]]
        added.append(submit(tenant, definition, Base64=image))  # newer tasks come before the token: never seen
        token = page["ScrollToken"]
        if not token:
            break
    assert seen == list(reversed(first))
    ascending = tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "Limit": 100,
                                              "Sort": {"Field": "CreateTime", "Order": "Asc"}})["TaskSet"]
    assert [item["TaskId"] for item in ascending] == first + added
    error = _error(lambda: tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "ScrollToken": "bogus"}))
    assert error.code == "InvalidParameterValue"
    error = _error(lambda: tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id,
                                                         "Sort": {"Field": "Size", "Order": "Asc"}}))
    assert error.code == "InvalidParameterValue.Sort"


def test_describe_tasks_filters_by_status_and_time(tenant):
    definition = create_template(tenant, JPEG_OUT)
    task_id = submit(tenant, definition, Base64=b64(small_photo_png(16)))
    answer, _ = wait_finished(tenant, task_id)
    finished = tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "Status": "FINISH"})["TaskSet"]
    assert [item["TaskId"] for item in finished] == [task_id]
    assert tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "Status": "WAITING"})["TaskSet"] == []
    created = answer["CreateTime"]
    within = {"SubAppId": tenant.sub_app_id, "CreateTime": {"After": created}, "FinishTime": {"After": created}}
    assert len(tenant.call("DescribeTasks", within)["TaskSet"]) == 1
    later = {"SubAppId": tenant.sub_app_id, "CreateTime": {"After": "2999-01-01T00:00:00Z"}}
    assert tenant.call("DescribeTasks", later)["TaskSet"] == []
    by_finish = tenant.call("DescribeTasks", {"SubAppId": tenant.sub_app_id, "Sort": {"Field": "FinishTime", "Order": "Desc"}})
    assert [item["TaskId"] for item in by_finish["TaskSet"]] == [task_id]


def test_priority_decides_the_order_with_one_engine_process(tenant, task_server):
    """One engine process: a slow task first, then tasks of rising priority; they run highest first."""
    if getattr(task_server, "cluster", None) is not None:
        pytest.skip("two worker processes run two tasks at once: the order is not one engine process's")
    import sqlalchemy as sa
    from vodimg.storage.schema import events

    blocker = submit(tenant, create_template(tenant, SLOW), Base64=b64(_noisy_png(400)))
    quick = create_template(tenant, JPEG_OUT)
    by_priority = {priority: submit(tenant, quick, Base64=b64(small_photo_png(16)), TasksPriority=priority)
                   for priority in (-10, 0, 5, 10, -3)}
    for task_id in [blocker, *by_priority.values()]:
        wait_finished(tenant, task_id)
    database = task_server.accounts()._db
    with database.read() as conn:
        rows = conn.execute(sa.select(events.c.content).where(events.c.sub_app_id == tenant.sub_app_id)
                            .order_by(events.c.seq)).all()
    finished = [re.search(r'"TaskId":"([^"]+)"', row[0]).group(1) for row in rows]
    assert finished == [blocker] + [by_priority[p] for p in (10, 5, 0, -3, -10)]
