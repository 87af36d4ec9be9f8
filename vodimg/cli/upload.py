"""``vodimg upload FILE...``: upload images to a vodimg service with the official clients.

The three steps of a VOD upload, as ``vod-python-sdk``'s VodUploadClient does them (which cannot be
pointed at another host than Tencent's): ApplyUpload with ``tencentcloud-sdk-python``, the upload
with ``cos-python-sdk-v5`` to the service's own COS endpoint (``upload_file``: multipart above
1 MB), CommitUpload. Prints one JSON line per file (``File``, ``FileId``, ``MediaUrl``); errors
print ``{"File", "Error": {"Code", "Message"}}`` on stderr and make the exit status 1.
Needs the ``upload`` extra (``pip install 'vodimg[upload]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

PART_MB = 1  # upload_file's part size: files above this go multipart


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "upload", help="upload images (ApplyUpload, COS upload, CommitUpload) and print FileId and MediaUrl",
        description="Upload images to a vodimg service with the official clients; prints JSON per file.")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--endpoint", default=os.environ.get("VODIMG_ENDPOINT", "127.0.0.1:9000"),
                        help="the service's HOST:PORT (env VODIMG_ENDPOINT; default 127.0.0.1:9000)")
    parser.add_argument("--https", action="store_true", help="use HTTPS (the service's --tls-port)")
    parser.add_argument("--secret-id", default=os.environ.get("VODIMG_SECRET_ID"), help="env VODIMG_SECRET_ID")
    parser.add_argument("--secret-key", default=os.environ.get("VODIMG_SECRET_KEY"), help="env VODIMG_SECRET_KEY")
    parser.add_argument("--sub-app-id", type=int, default=_int_env("VODIMG_SUBAPP_ID"),
                        help="the application (env VODIMG_SUBAPP_ID; default: the account's default)")
    parser.add_argument("--region", default=os.environ.get("VODIMG_REGION", "ap-guangzhou"))
    parser.add_argument("--media-type", help="the extension (default: the file's)")
    parser.add_argument("--media-name", help="the media name (default: the file name without extension)")
    parser.add_argument("--class-id", type=int)
    parser.add_argument("--expire-time", help="ISO 8601, e.g. 2026-01-20T03:02:33Z")
    parser.add_argument("--source-context")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else None


def run(args: argparse.Namespace) -> int:
    if not args.secret_id or not args.secret_key:
        print("vodimg upload: give --secret-id and --secret-key (or VODIMG_SECRET_ID, VODIMG_SECRET_KEY)",
              file=sys.stderr)
        return 2
    try:
        from qcloud_cos import CosConfig, CosS3Client  # noqa: F401
        from tencentcloud.vod.v20180717 import vod_client  # noqa: F401
    except ImportError:
        print("vodimg upload needs the official clients: pip install 'vodimg[upload]'", file=sys.stderr)
        return 2
    failed = 0
    vod = _vod_client(args)
    for path in args.files:
        try:
            result = upload_one(vod, args, path)
        except Exception as error:  # noqa: BLE001 - one line per failed file, the others go on
            failed += 1
            print(json.dumps({"File": str(path), "Error": _error(error)}), file=sys.stderr, flush=True)
        else:
            print(json.dumps({"File": str(path), **result}), flush=True)
    return 1 if failed else 0


def _vod_client(args: argparse.Namespace):
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.vod.v20180717 import vod_client

    http_profile = HttpProfile(endpoint=args.endpoint, protocol="https" if args.https else "http")
    return vod_client.VodClient(credential.Credential(args.secret_id, args.secret_key), args.region,
                                ClientProfile(httpProfile=http_profile))


def upload_one(vod, args: argparse.Namespace, path: Path) -> dict:
    from qcloud_cos import CosConfig, CosS3Client
    from tencentcloud.vod.v20180717 import models

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    params = {"MediaType": args.media_type or path.suffix.lstrip(".").lower(),
              "MediaName": args.media_name or path.stem}
    for name, value in (("SubAppId", args.sub_app_id), ("ClassId", args.class_id),
                        ("ExpireTime", args.expire_time), ("SourceContext", args.source_context)):
        if value is not None:
            params[name] = value
    apply_request = models.ApplyUploadRequest()
    apply_request.from_json_string(json.dumps(params))
    applied = vod.ApplyUpload(apply_request)
    certificate = applied.TempCertificate
    cos = CosS3Client(CosConfig(Region=applied.StorageRegion, SecretId=certificate.SecretId,
                                SecretKey=certificate.SecretKey, Token=certificate.Token, Domain=args.endpoint,
                                Scheme="https" if args.https else "http"))
    with _progress(path, args.no_progress) as callback:
        cos.upload_file(Bucket=applied.StorageBucket, Key=applied.MediaStoragePath, LocalFilePath=str(path),
                        PartSize=PART_MB, EnableMD5=True, progress_callback=callback)
    commit_request = models.CommitUploadRequest()
    commit_request.from_json_string(json.dumps({"VodSessionKey": applied.VodSessionKey,
                                                **({"SubAppId": args.sub_app_id} if args.sub_app_id else {})}))
    committed = vod.CommitUpload(commit_request)
    return {"FileId": committed.FileId, "MediaUrl": committed.MediaUrl}


class _progress:
    """A tqdm bar on stderr fed by the COS client's ``progress_callback(consumed, total)``."""

    def __init__(self, path: Path, off: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, file=sys.stderr,
                        disable=off, leave=False)

    def __enter__(self):
        def callback(consumed: int, total: int) -> None:
            self.bar.update(consumed - self.bar.n)

        return callback

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:  # a small file goes in one PUT, which reports no progress
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def _error(error: Exception) -> dict:
    code = getattr(error, "get_code", None) or getattr(error, "get_error_code", None)
    message = getattr(error, "get_message", None) or getattr(error, "get_error_msg", None)
    if code is not None:
        return {"Code": code(), "Message": message() if message else str(error)}
    return {"Code": type(error).__name__, "Message": str(error)}
