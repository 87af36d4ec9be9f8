"""Helpers for end-to-end task tests: test images and polling through the official SDK."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import numpy as np
from PIL import Image

from tests.engine.images import encode, photo

PRESET_WEBP = None  # looked up from the presets by the tests that need one


def small_photo_png(size: int = 64) -> bytes:
    return encode(np.ascontiguousarray(photo()[100:100 + size, 200:200 + size]), ".png")


def small_photo_jpeg(size: int = 96) -> bytes:
    return encode(np.ascontiguousarray(photo()[100:100 + size, 200:200 + size]), ".jpg", 90)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header announcing width x height pixels, with a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wait_finished(tenant, task_id: str, timeout: float = 60.0, interval: float = 0.02) -> tuple[dict, list]:
    """Poll DescribeTaskDetail until FINISH; (last answer, [(Status, Progress) seen, in order])."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = tenant.call("DescribeTaskDetail", {"TaskId": task_id, "SubAppId": tenant.sub_app_id})
        state = (answer["Status"], answer["ProcessImageAsyncTask"]["Progress"])
        if not seen or seen[-1] != state:
            seen.append(state)
        if answer["Status"] == "FINISH":
            return answer, seen
        time.sleep(interval)
    raise AssertionError(f"task {task_id} did not finish within {timeout} s; seen {seen}")


def submit(tenant, definition: int, **params) -> str:
    request = {"SubAppId": tenant.sub_app_id, "ImageTaskInput": {"Definition": definition}, **params}
    return tenant.call("ProcessImageAsync", request)["TaskId"]


def create_template(tenant, configure: dict, name: str = "t") -> int:
    return tenant.call("CreateProcessImageAsyncTemplate",
                       {"SubAppId": tenant.sub_app_id, "Name": name, "ProcessImageConfigure": configure})["Definition"]
