"""The media library end to end with the official clients against ``vodimg serve`` on loopback, on
SQLite and PostgreSQL with a local object store, and on SQLite with S3 storage (moto's server): ApplyUpload, the upload with ``cos-python-sdk-v5`` (``put_object`` and the
multipart ``upload_file``), CommitUpload, PullUpload, DescribeMediaInfos, DeleteMedia, the events,
and every bad input of the issue, each with its documented error and nothing stored changed.
"""

from __future__ import annotations

import hashlib
import base64
import time
from datetime import datetime, timedelta, timezone
from unittest import mock

import httpx
import orjson
import pytest
import sqlalchemy as sa
from qcloud_cos.cos_exception import CosServiceError
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from tests.e2e.imagehost import ImageHost
from tests.e2e.media import (
    MAX_INPUT_BYTES, apply, commit, cos_client, database, events_of, noisy_png, objects_under, put,
    switch_events_on, upload, wait_pull,
)
from tests.e2e.cluster import backend_server
from tests.e2e.tasks import small_photo_jpeg, small_photo_png, submit, wait_finished
from vodimg.domain.presets import PRESETS
from vodimg.storage.schema import media, upload_sessions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images():
    host = ImageHost(files={"/photo.jpg": small_photo_jpeg(), "/photo.png": small_photo_png(),
                            "/notes.txt": b"not an image at all"},
                     huge_bytes=3 * MAX_INPUT_BYTES).start()
    yield host
    host.stop()


MEDIA_ENV = {"VODIMG_URL_ALLOW": "127.0.0.2/32", "VODIMG_URL_TIMEOUT_SECONDS": "2",
             "VODIMG_MAX_INPUT_BYTES": str(MAX_INPUT_BYTES)}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "s3",
                                        pytest.param("cluster", marks=pytest.mark.postgres)])
def media_server(request, tmp_path_factory):
    with backend_server(request, tmp_path_factory, "media", MEDIA_ENV) as server:
        yield server


@pytest.fixture
def tenant(media_server):
    return media_server.new_tenant()


def _sdk_error(call) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as raised:
        call()
    return raised.value


def _cos_error(call) -> CosServiceError:
    with pytest.raises(CosServiceError) as raised:
        call()
    return raised.value


def _header(answer: dict, name: str) -> str:
    """A response header from the COS client's dict (this server's header names are lowercase)."""
    return {key.lower(): value for key, value in answer.items()}[name.lower()]


def _media_count(server, sub_app_id: int) -> int:
    with database(server).read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(media).where(
            media.c.sub_app_id == sub_app_id)).scalar()


def _session_id(applied: dict) -> str:
    return applied["MediaStoragePath"].split("/")[2]


# -- uploads that work ------------------------------------------------------------------------------

def test_put_object_then_commit_serves_the_bytes_and_describes_them(media_server, tenant):
    data = small_photo_jpeg()
    applied = apply(tenant, "jpg", MediaName="holiday", ClassId=3, SourceContext="ctx-1")
    assert applied["StorageRegion"] == "ap-guangzhou"
    assert applied["MediaStoragePath"].startswith("/upload/") and applied["MediaStoragePath"].endswith("/holiday.jpg")
    assert applied["TempCertificate"]["ExpiredTime"] > time.time() + 3000
    answer = put(media_server, applied, data, EnableMD5=True)
    assert _header(answer, "ETag") == f'"{hashlib.md5(data).hexdigest()}"'
    head = cos_client(media_server, applied).head_object(Bucket=applied["StorageBucket"], Key=applied["MediaStoragePath"])
    assert int(_header(head, "Content-Length")) == len(data)
    committed = commit(tenant, applied)
    assert len(committed["FileId"]) == 19 and committed["FileId"].isdigit()
    served = httpx.get(committed["MediaUrl"])
    assert served.status_code == 200 and served.content == data and served.headers["content-type"] == "image/jpeg"

    described = tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id,
                                                    "FileIds": [committed["FileId"], "1000000000000000000"]})
    assert described["NotExistFileIdSet"] == ["1000000000000000000"]
    [info] = described["MediaInfoSet"]
    basic, meta = info["BasicInfo"], info["MetaData"]
    assert (basic["Name"], basic["Type"], basic["Category"], basic["ClassId"]) == ("holiday", "jpg", "Image", 3)
    assert basic["MediaUrl"] == committed["MediaUrl"] and basic["ExpireTime"] == "9999-12-31T23:59:59Z"
    assert basic["SourceInfo"]["SourceType"] == "Upload" and basic["SourceInfo"]["SourceContext"] == "ctx-1"
    assert (meta["Size"], meta["Width"], meta["Height"], meta["Container"]) == (len(data), 96, 96, "jpeg")
    assert meta["Md5"] == hashlib.md5(data).hexdigest()
    only_meta = tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id, "FileIds": [committed["FileId"]],
                                                    "Filters": ["metaData"]})["MediaInfoSet"][0]
    assert only_meta["BasicInfo"] is None and only_meta["MetaData"]["Size"] == len(data)


def test_upload_file_of_5_mb_goes_multipart_and_leaves_no_parts(media_server, tenant, tmp_path):
    data = noisy_png(1350)
    assert 5 * 1024 * 1024 <= len(data) < MAX_INPUT_BYTES
    path = tmp_path / "big.png"
    path.write_bytes(data)
    applied = apply(tenant, "png")
    answer = cos_client(media_server, applied).upload_file(
        Bucket=applied["StorageBucket"], Key=applied["MediaStoragePath"], LocalFilePath=str(path), EnableMD5=True)
    assert answer["ETag"].strip('"').endswith("-6")  # five 1 MB parts and the rest
    committed = commit(tenant, applied)
    assert httpx.get(committed["MediaUrl"]).content == data
    deadline = time.monotonic() + 5  # the parts are deleted just after CompleteMultipartUpload answers
    while len(left := objects_under(media_server, f"uploads/{_session_id(applied)}")) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(left) == 1 and "/objects/" in left[0]  # the object only: parts deleted


def test_upload_process_describe_delete_in_one_flow_with_events(media_server, tenant):
    switch_events_on(tenant)
    committed = upload(media_server, tenant, small_photo_png(), "png", MediaName="flow")
    webp = next(p.definition for p in PRESETS if (p.configure.get("EncodeConfig") or {}).get("Format") == "WebP")
    finished, _seen = wait_finished(tenant, submit(tenant, webp, FileId=committed["FileId"]))
    task = finished["ProcessImageAsyncTask"]
    assert task["ErrCode"] == 0, task["Message"]
    output_id = task["Output"]["FileInfo"]["FileId"]
    described = tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id,
                                                    "FileIds": [committed["FileId"], output_id]})
    assert {info["FileId"] for info in described["MediaInfoSet"]} == {committed["FileId"], output_id}

    tenant.call("DeleteMedia", {"SubAppId": tenant.sub_app_id, "FileId": committed["FileId"]})
    after = tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id, "FileIds": [committed["FileId"]]})
    assert after["MediaInfoSet"] == [] and after["NotExistFileIdSet"] == [committed["FileId"]]
    assert httpx.get(committed["MediaUrl"]).status_code == 404
    again = _sdk_error(lambda: tenant.call("DeleteMedia", {"SubAppId": tenant.sub_app_id, "FileId": committed["FileId"]}))
    assert again.get_code() == "ResourceNotFound.FileNotExist"

    kinds = [kind for kind, _content in events_of(media_server, tenant.sub_app_id)]
    assert kinds == ["NewFileUpload", "ProcessImageAsyncCompleteEvent", "FileDeleted"]
    upload_event = orjson.loads(events_of(media_server, tenant.sub_app_id)[0][1])["FileUploadEvent"]
    assert upload_event["FileId"] == committed["FileId"] and upload_event["MediaBasicInfo"]["Name"] == "flow"
    deleted = orjson.loads(events_of(media_server, tenant.sub_app_id)[2][1])["FileDeleteEvent"]
    assert deleted["FileIdSet"] == [committed["FileId"]]


def test_no_events_while_the_switches_are_off(media_server, tenant):
    committed = upload(media_server, tenant, small_photo_jpeg())
    tenant.call("DeleteMedia", {"SubAppId": tenant.sub_app_id, "FileId": committed["FileId"]})
    assert events_of(media_server, tenant.sub_app_id) == []


def test_a_file_past_its_expire_time_is_gone(media_server, tenant):
    expire = (datetime.now(timezone.utc) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    committed = upload(media_server, tenant, small_photo_jpeg(), ExpireTime=expire)
    assert httpx.get(committed["MediaUrl"]).status_code == 200
    time.sleep(4.5)
    assert httpx.get(committed["MediaUrl"]).status_code == 404
    described = tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id, "FileIds": [committed["FileId"]]})
    assert described["NotExistFileIdSet"] == [committed["FileId"]]


# -- PullUpload -------------------------------------------------------------------------------------

def test_pull_upload_shows_the_task_and_raises_pull_complete(media_server, tenant, images):
    task_id = tenant.call("PullUpload", {"SubAppId": tenant.sub_app_id, "MediaUrl": images.url("/photo.png"),
                                         "SessionContext": "sc"})["TaskId"]
    assert task_id.startswith(f"{tenant.sub_app_id}-PullUpload-") and len(task_id.rsplit("-", 1)[1]) == 32
    answer = wait_pull(tenant, task_id)
    assert answer["TaskType"] == "PullUpload" and answer["ProcessImageAsyncTask"] is None
    task = answer["PullUploadTask"]
    assert (task["ErrCode"], task["Progress"], task["SessionContext"]) == (0, 100, "sc")
    assert task["MediaBasicInfo"]["Name"] == "photo" and task["MediaBasicInfo"]["Type"] == "png"
    assert task["MetaData"]["Width"] == 64 and task["MetaData"]["Md5"] == hashlib.md5(small_photo_png()).hexdigest()
    assert httpx.get(task["FileUrl"]).content == small_photo_png()
    described = tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id, "FileIds": [task["FileId"]]})
    assert described["MediaInfoSet"][0]["MetaData"]["Container"] == "png"
    [event] = tenant.call("PullEvents", {"SubAppId": tenant.sub_app_id})["EventSet"]
    assert event["EventType"] == "PullComplete" and event["PullCompleteEvent"]["FileId"] == task["FileId"]
    assert event["PullCompleteEvent"]["MediaBasicInfo"]["MediaUrl"] == task["FileUrl"]
    tenant.call("ConfirmEvents", {"SubAppId": tenant.sub_app_id, "EventHandles": [event["EventHandle"]]})


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/photo.jpg", "http://169.254.169.254/latest/meta-data",
                                 "ftp://127.0.0.2/photo.jpg"])
def test_pull_upload_of_a_refused_url(tenant, url):
    error = _sdk_error(lambda: tenant.call("PullUpload", {"SubAppId": tenant.sub_app_id, "MediaUrl": url}))
    assert error.get_code() == "InvalidParameterValue.MediaUrl"


@pytest.mark.parametrize("path, says", [
    ("/redirect?to=http://127.0.0.1:9/photo.jpg", "refused"), ("/missing.jpg", "404"),
    ("/huge", "limit"), ("/notes.txt", "not an image"),
])
def test_pull_upload_that_fails_finishes_with_60000(media_server, tenant, images, path, says):
    task_id = tenant.call("PullUpload", {"SubAppId": tenant.sub_app_id, "MediaUrl": images.url(path)})["TaskId"]
    task = wait_pull(tenant, task_id)["PullUploadTask"]
    assert task["ErrCode"] == 60000 and says in task["Message"].lower().replace("http 404", "404"), task["Message"]
    assert task["FileId"] == "" and _media_count(media_server, tenant.sub_app_id) == 0
    [(kind, _content)] = events_of(media_server, tenant.sub_app_id)
    assert kind == "PullComplete"


# -- bad input: ApplyUpload, CommitUpload -------------------------------------------------------------

@pytest.mark.parametrize("media_type", ["exe", "mp4"])
def test_apply_upload_refuses_what_is_not_an_image(tenant, media_type):
    assert _sdk_error(lambda: apply(tenant, media_type)).get_code() == "InvalidParameterValue.MediaType"


def test_apply_upload_refuses_an_expire_time_in_the_past(tenant):
    error = _sdk_error(lambda: apply(tenant, "jpg", ExpireTime="2020-01-01T00:00:00Z"))
    assert error.get_code() == "InvalidParameterValue.ExpireTime"


def test_commit_before_the_upload_then_twice(media_server, tenant):
    applied = apply(tenant)
    assert _sdk_error(lambda: commit(tenant, applied)).get_code() == "FailedOperation"
    put(media_server, applied, small_photo_jpeg())
    committed = commit(tenant, applied)
    assert _sdk_error(lambda: commit(tenant, applied)).get_code() == "InvalidParameterValue.VodSessionKey"
    assert _media_count(media_server, tenant.sub_app_id) == 1
    late = _cos_error(lambda: put(media_server, applied, small_photo_png()))  # the credential is still valid
    assert (late.get_error_code(), late.get_status_code()) == ("AccessDenied", 403)
    assert httpx.get(committed["MediaUrl"]).content == small_photo_jpeg()


def test_commit_with_another_applications_forged_or_expired_key(media_server, tenant):
    applied = apply(tenant)
    put(media_server, applied, small_photo_jpeg())
    other = media_server.new_tenant()
    for who, key in ((other, applied["VodSessionKey"]), (tenant, applied["VodSessionKey"][:-4] + "beef"),
                     (tenant, "forged"), (tenant, "0" * 32 + ".x")):
        error = _sdk_error(lambda: who.call("CommitUpload", {"SubAppId": who.sub_app_id, "VodSessionKey": key}))
        assert error.get_code() == "InvalidParameterValue.VodSessionKey"
    with database(media_server).write() as conn:
        conn.execute(upload_sessions.update().where(upload_sessions.c.session_id == _session_id(applied))
                     .values(expires_ms=int(time.time() * 1000) - 1))
    assert _sdk_error(lambda: commit(tenant, applied)).get_code() == "InvalidParameterValue.VodSessionKey"
    assert _media_count(media_server, tenant.sub_app_id) == 0


def test_commit_refuses_a_non_image_uploaded_as_jpg(media_server, tenant):
    applied = apply(tenant)
    put(media_server, applied, b"MZ\x90\x00 this is a program, not a photo" * 100)
    assert _sdk_error(lambda: commit(tenant, applied)).get_code() == "FailedOperation.MediaType"
    assert _media_count(media_server, tenant.sub_app_id) == 0


# -- bad input: the COS endpoint --------------------------------------------------------------------

def _nothing_stored(server, applied: dict) -> None:
    error = _cos_error(lambda: cos_client(server, applied).head_object(
        Bucket=applied["StorageBucket"], Key=applied["MediaStoragePath"]))
    assert error.get_status_code() == 404
    assert objects_under(server, f"uploads/{_session_id(applied)}") == []


def test_put_signed_with_the_wrong_key_or_an_unknown_one(media_server, tenant):
    applied = apply(tenant)
    wrong = _cos_error(lambda: cos_client(media_server, applied, secret_key="x" * 32).put_object(
        Bucket=applied["StorageBucket"], Key=applied["MediaStoragePath"], Body=small_photo_jpeg()))
    assert (wrong.get_error_code(), wrong.get_status_code()) == ("SignatureDoesNotMatch", 403)
    unknown = _cos_error(lambda: cos_client(media_server, applied, secret_id="AKID" + "u" * 32).put_object(
        Bucket=applied["StorageBucket"], Key=applied["MediaStoragePath"], Body=small_photo_jpeg()))
    assert (unknown.get_error_code(), unknown.get_status_code()) == ("InvalidAccessKeyId", 403)
    no_token = _cos_error(lambda: cos_client(media_server, applied, token="").put_object(
        Bucket=applied["StorageBucket"], Key=applied["MediaStoragePath"], Body=small_photo_jpeg()))
    assert no_token.get_error_code() == "AccessDenied"
    _nothing_stored(media_server, applied)


def test_put_with_an_expired_or_future_key_time(media_server, tenant):
    applied = apply(tenant)
    client = cos_client(media_server, applied)
    url = f"http://{media_server.endpoint}{applied['MediaStoragePath']}"
    token = {"x-cos-security-token": applied["TempCertificate"]["Token"]}
    expired = client.get_auth("PUT", applied["StorageBucket"], applied["MediaStoragePath"], Expired=-120)
    answer = httpx.put(url, content=small_photo_jpeg(), headers={"Authorization": expired, **token})
    assert answer.status_code == 403 and "<Code>AccessDenied</Code>" in answer.text and "expired" in answer.text
    with mock.patch("qcloud_cos.cos_auth.time.time", return_value=time.time() + 7200):
        future = client.get_auth("PUT", applied["StorageBucket"], applied["MediaStoragePath"])
    answer = httpx.put(url, content=small_photo_jpeg(), headers={"Authorization": future, **token})
    assert answer.status_code == 403 and "<Code>RequestTimeTooSkewed</Code>" in answer.text
    assert httpx.put(url, content=b"x").status_code == 403  # not signed at all
    _nothing_stored(media_server, applied)


def test_a_temporary_key_writes_its_own_key_only(media_server, tenant):
    applied, other = apply(tenant), apply(tenant)
    error = _cos_error(lambda: cos_client(media_server, applied).put_object(
        Bucket=applied["StorageBucket"], Key=other["MediaStoragePath"], Body=small_photo_jpeg()))
    assert (error.get_error_code(), error.get_status_code()) == ("AccessDenied", 403)
    _nothing_stored(media_server, other)


def test_put_whose_content_md5_does_not_match(media_server, tenant):
    applied = apply(tenant)
    wrong_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    error = _cos_error(lambda: put(media_server, applied, small_photo_jpeg(), ContentMD5=wrong_md5))
    assert (error.get_error_code(), error.get_status_code()) == ("InvalidDigest", 400)
    _nothing_stored(media_server, applied)


def test_put_larger_than_the_input_limit(media_server, tenant):
    applied = apply(tenant)
    error = _cos_error(lambda: put(media_server, applied, b"\0" * (MAX_INPUT_BYTES + 1)))
    assert (error.get_error_code(), error.get_status_code()) == ("EntityTooLarge", 400)
    _nothing_stored(media_server, applied)


def test_complete_multipart_with_a_missing_reordered_or_unknown_part(media_server, tenant):
    applied = apply(tenant, "png")
    client = cos_client(media_server, applied)
    bucket, key = applied["StorageBucket"], applied["MediaStoragePath"]
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    data = noisy_png(800)
    chunks = [data[:1024 * 1024], data[1024 * 1024:]]
    etags = [_header(client.upload_part(Bucket=bucket, Key=key, Body=chunk, PartNumber=number, UploadId=upload_id),
                     "ETag") for number, chunk in enumerate(chunks, 1)]
    listed = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert [int(part["PartNumber"]) for part in listed["Part"]] == [1, 2]

    def complete(parts):
        return client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                MultipartUpload={"Part": parts})

    for parts, code in (
        ([{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 3, "ETag": etags[1]}], "InvalidPart"),
        ([{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}], "InvalidPartOrder"),
        ([{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}], "InvalidPart"),
        ([{"PartNumber": 2, "ETag": etags[1]}], None),
    ):
        if code is None:
            break
        error = _cos_error(lambda: complete(parts))
        assert (error.get_error_code(), error.get_status_code()) == (code, 400)
    error = _cos_error(lambda: client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId="f" * 32, MultipartUpload={"Part": [{"PartNumber": 1, "ETag": etags[0]}]}))
    assert (error.get_error_code(), error.get_status_code()) == ("NoSuchUpload", 404)
    error = _cos_error(lambda: client.head_object(Bucket=bucket, Key=key))
    assert error.get_status_code() == 404  # nothing was assembled

    complete([{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}])
    assert httpx.get(commit(tenant, applied)["MediaUrl"]).content == data


def test_abort_multipart_removes_the_parts(media_server, tenant):
    applied = apply(tenant, "png")
    client = cos_client(media_server, applied)
    bucket, key = applied["StorageBucket"], applied["MediaStoragePath"]
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, Body=b"x" * 1000, PartNumber=1, UploadId=upload_id)
    assert objects_under(media_server, f"uploads/{_session_id(applied)}") != []
    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert objects_under(media_server, f"uploads/{_session_id(applied)}") == []
    error = _cos_error(lambda: client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id))
    assert error.get_error_code() == "NoSuchUpload"


# -- bad input: DescribeMediaInfos, DeleteMedia -----------------------------------------------------

def test_describe_media_infos_with_no_or_too_many_file_ids(tenant):
    empty = _sdk_error(lambda: tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id, "FileIds": []}))
    assert empty.get_code() == "InvalidParameterValue.FileIdsEmpty"
    many = [str(10**18 + index) for index in range(21)]
    error = _sdk_error(lambda: tenant.call("DescribeMediaInfos", {"SubAppId": tenant.sub_app_id, "FileIds": many}))
    assert error.get_code() == "InvalidParameterValue.FileIdsTooMany"


def test_delete_media_of_another_application(media_server, tenant):
    committed = upload(media_server, tenant, small_photo_jpeg())
    other = media_server.new_tenant()
    error = _sdk_error(lambda: other.call("DeleteMedia", {"SubAppId": other.sub_app_id, "FileId": committed["FileId"]}))
    assert error.get_code() == "ResourceNotFound.FileNotExist"
    assert httpx.get(committed["MediaUrl"]).status_code == 200
    described = other.call("DescribeMediaInfos", {"SubAppId": other.sub_app_id, "FileIds": [committed["FileId"]]})
    assert described["NotExistFileIdSet"] == [committed["FileId"]]


def test_process_image_async_takes_an_uploaded_file_id_of_its_own_application_only(media_server, tenant):
    committed = upload(media_server, tenant, small_photo_jpeg())
    other = media_server.new_tenant()
    error = _sdk_error(lambda: submit(other, PRESETS[0].definition, FileId=committed["FileId"]))
    assert error.get_code() == "InvalidParameterValue.FileId"
