"""Helpers for the media-library end-to-end tests: a server with a small input limit, uploads
through the official ``cos-python-sdk-v5`` client, the server's database."""

from __future__ import annotations

import time

import numpy as np
import sqlalchemy as sa
from qcloud_cos import CosConfig, CosS3Client

from tests.engine.images import encode
from vodimg.storage.schema import events

MAX_INPUT_BYTES = 6 * 1024 * 1024  # the test servers' VODIMG_MAX_INPUT_BYTES


def noisy_png(side: int, seed: int = 1) -> bytes:
    """A PNG of about 3 * side * side bytes (noise does not compress)."""
    return encode(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8), ".png")


def apply(tenant, media_type: str = "jpg", **params) -> dict:
    return tenant.call("ApplyUpload", {"SubAppId": tenant.sub_app_id, "MediaType": media_type, **params})


def cos_client(server, applied: dict, secret_id: str | None = None, secret_key: str | None = None,
               token: str | None = None) -> CosS3Client:
    """The official COS client configured as the README shows, with the TempCertificate."""
    certificate = applied["TempCertificate"]
    return CosS3Client(CosConfig(
        Region=applied["StorageRegion"], SecretId=secret_id or certificate["SecretId"],
        SecretKey=secret_key or certificate["SecretKey"],
        Token=certificate["Token"] if token is None else token, Domain=server.endpoint, Scheme="http"))


def put(server, applied: dict, data: bytes, **options) -> dict:
    return cos_client(server, applied).put_object(Bucket=applied["StorageBucket"], Key=applied["MediaStoragePath"],
                                                  Body=data, **options)


def commit(tenant, applied: dict) -> dict:
    return tenant.call("CommitUpload", {"SubAppId": tenant.sub_app_id, "VodSessionKey": applied["VodSessionKey"]})


def upload(server, tenant, data: bytes, media_type: str = "jpg", **params) -> dict:
    applied = apply(tenant, media_type, **params)
    put(server, applied, data)
    return commit(tenant, applied)


def database(server):
    server.accounts()
    return server._database


def switch_events_on(tenant) -> None:
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "UploadMediaCompleteEventSwitch": "ON",
                                      "DeleteMediaCompleteEventSwitch": "ON"})


def events_of(server, sub_app_id: int) -> list[tuple[str, str]]:
    with database(server).read() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(events.c.event_type, events.c.content).where(events.c.sub_app_id == sub_app_id)
            .order_by(events.c.seq)).all()]


def wait_pull(tenant, task_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = tenant.call("DescribeTaskDetail", {"TaskId": task_id, "SubAppId": tenant.sub_app_id})
        if answer["Status"] == "FINISH":
            return answer
        time.sleep(0.05)
    raise AssertionError(f"PullUpload {task_id} did not finish within {timeout} s")


def objects_under(server, prefix: str) -> list[str]:
    """The object-store keys under ``prefix``: in the server's S3 bucket (``server.s3``: the S3
    server, bucket and key prefix) or its local directory."""
    s3 = getattr(server, "s3", None)
    if s3 is not None:
        s3_server, bucket, base = s3
        listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{base}/{prefix}")
        return sorted(item["Key"].removeprefix(f"{base}/") for item in listed.get("Contents", []))
    root = server.data_dir / "objects"
    return sorted(str(path.relative_to(root)) for path in (root / prefix).rglob("*")
                  if path.is_file()) if (root / prefix).exists() else []
