"""A hostile corpus, made here (no binary files in the repository), through ``process_image`` in a
child process: each case's outcome, time and peak memory (VmHWM above the child's RSS before the
case, reset between cases through /proc/self/clear_refs) are checked.

Outcomes: "ok" (processed; a check may look at the output), or the EngineError subclass the case
must raise, with a message a person can act on. Time and memory bounds are generous (2 shared
cores): they catch a bomb that decodes, not a slow machine.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from tests.engine.images import SEED_WITHOUT_SR, encode, photo

REPO = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


@dataclass
class Case:
    name: str
    data: bytes
    outcome: str  # "ok" or an EngineError class name
    seconds: float = 3.0
    peak_mb: float = 60.0
    configure: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    check: Callable[[dict], None] | None = None  # on the child's result (output bytes, size)
    message: str = ""  # a fragment the error message must contain


CHILD = r"""
import os, pickle, sys, time
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = "1"
from vodimg.engine import EngineError, Limits, process_image, memory

def status(key):
    return [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)][0]

cases = pickle.load(open(sys.argv[1], "rb"))
process_image(cases[0]["warm"], {})  # libraries loaded before the first measurement
results = []
for case in cases:
    print(case["name"], file=sys.stderr, flush=True)  # the last name shown is the one that crashed
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM back to the current RSS
    before = status("VmRSS")
    started = time.monotonic()
    result = {"name": case["name"]}
    try:
        out = process_image(case["data"], case["configure"], Limits(**case["limits"]))
        result.update(outcome="ok", data=out.data, width=out.width, height=out.height, format=out.format)
    except EngineError as error:
        result.update(outcome=type(error).__name__, message=str(error))
    result["seconds"] = time.monotonic() - started
    result["peak_mb"] = (status("VmHWM") - before) / 1024
    results.append(result)
pickle.dump(results, open(sys.argv[2], "wb"))
"""


# -- the corpus -------------------------------------------------------------------------------------


def small_photo(width: int = 96, height: int = 64) -> np.ndarray:
    return cv2.resize(photo("astronaut"), (width, height), interpolation=cv2.INTER_AREA)


def pillow_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def rgb_image(width: int = 96, height: int = 64) -> Image.Image:
    return Image.fromarray(small_photo(width, height)[..., ::-1].copy())


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_bomb(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def jpeg_header_bomb(side: int) -> bytes:
    data = bytearray(encode(small_photo(), ".jpg"))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, side, side)  # height, width of the frame header
    return bytes(data)


def webp_header_bomb() -> bytes:
    ok, lossy = cv2.imencode(".webp", small_photo(), [cv2.IMWRITE_WEBP_QUALITY, 80])
    data = bytearray(lossy.tobytes())
    start = data.find(b"\x9d\x01\x2a")  # VP8 key frame start code, then 14-bit width and height
    struct.pack_into("<HH", data, start + 3, 16383, 16383)
    return bytes(data)


def gif_header_bomb() -> bytes:
    data = bytearray(pillow_bytes(rgb_image().convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, 65535, 65535)  # logical screen
    descriptor = data.find(b"\x2c")
    struct.pack_into("<HH", data, descriptor + 5, 65535, 65535)  # the image's own size
    return bytes(data)


def smooth_png(width: int, height: int) -> bytes:
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0).astype(np.uint8)
    return encode(cv2.merge([ramp, ramp[::-1], ramp]), ".png")


def progressive_jpeg_with_scans(count: int) -> bytes:
    data = pillow_bytes(rgb_image(256, 256), "JPEG", progressive=True, quality=80)
    end = data.rfind(b"\xff\xd9")
    starts = [index for index in range(len(data) - 1) if data[index : index + 2] == b"\xff\xda"] + [end]
    smallest = min((data[a:b] for a, b in zip(starts, starts[1:])), key=len)
    return data[:end] + smallest * count + data[end:]


def animated(fmt: str) -> bytes:
    frames = [rgb_image(), Image.fromarray(np.zeros((64, 96, 3), np.uint8))]
    if fmt == "GIF":
        frames = [frame.convert("P") for frame in frames]
    return pillow_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def billion_laughs_svg() -> bytes:
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)]
    return (f'<?xml version="1.0"?><!DOCTYPE svg [{"".join(entities)}]>'
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&lol9;</text></svg>').encode()


def png_with_html_text() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<html><script>alert(document.cookie)</script></html>")
    return pillow_bytes(rgb_image(), "PNG", pnginfo=info)


def sixteen_bit_png() -> bytes:
    pixels = np.zeros((8, 8, 3), np.uint16)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 65535, 32896, 0  # BGR
    return encode(pixels, ".png")


def cmyk_jpeg() -> bytes:
    return pillow_bytes(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red


def huge_icc(fmt: str) -> bytes:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return pillow_bytes(rgb_image(), fmt, icc_profile=srgb + bytes(2 * MB))


def oriented_jpeg(orientation: int) -> bytes:
    """40x20 stored pixels, white marker at the stored top-left corner."""
    pixels = np.full((20, 40, 3), 40, np.uint8)
    pixels[:5, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pillow_bytes(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())


# where the stored top-left corner ends up once the orientation is applied
MARKER_CORNER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


def decoded(result: dict) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(result["data"], np.uint8), cv2.IMREAD_UNCHANGED)


def expect_size(width: int, height: int):
    def check(result: dict) -> None:
        assert (result["width"], result["height"]) == (width, height)
    return check


def expect_marker(orientation: int):
    def check(result: dict) -> None:
        pixels = decoded(result)
        assert pixels.shape[:2] == ((40, 20) if orientation >= 5 else (20, 40))
        corners = {"tl": pixels[1, 1], "tr": pixels[1, -2], "bl": pixels[-2, 1], "br": pixels[-2, -2]}
        assert [name for name, value in corners.items() if value.mean() > 200] == [MARKER_CORNER[orientation]]
    return check


def expect_absent(*payloads: bytes):
    def check(result: dict) -> None:
        assert result["format"] in ("JPEG", "PNG")
        for payload in payloads:
            assert payload not in result["data"]  # re-encoded pixels only: no polyglot survives
    return check


def expect_16_bit_scaled(result: dict) -> None:
    assert decoded(result)[0, 0].tolist() == [255, 128, 0]


def expect_red(result: dict) -> None:
    b, g, r = decoded(result)[24, 32][:3].tolist()
    assert r > 200 and g < 60 and b < 60


def corpus() -> list[Case]:
    jpeg = encode(small_photo(), ".jpg")
    png = encode(small_photo(), ".png")
    zip_and_script = b"PK\x03\x04" + b"\0" * 26 + b"<script>alert(1)</script>"
    cases = [
        Case("zero bytes", b"", "InvalidImage", message="not an image"),
        Case("truncated JPEG", jpeg[: len(jpeg) // 2], "InvalidImage", message="truncated"),
        Case("truncated PNG", png[: len(png) // 2], "InvalidImage"),
        Case("JPEG cut inside its header", jpeg[:30], "InvalidImage"),
        Case("PNG header bomb 100000x100000", png_header_bomb(100_000, 100_000), "LimitExceeded",
             peak_mb=20, message="10000000000 pixels"),
        Case("JPEG header bomb 65500x65500", jpeg_header_bomb(65500), "LimitExceeded", peak_mb=20),
        Case("WebP header bomb 16383x16383", webp_header_bomb(), "LimitExceeded", peak_mb=20),
        Case("GIF header bomb 65535x65535", gif_header_bomb(), "LimitExceeded", peak_mb=20),
        Case("valid 4000x4000 PNG over the memory limit", smooth_png(4000, 4000), "LimitExceeded",
             limits={"max_memory_bytes": 64 * MB}, peak_mb=20, message="VODIMG_MAX_MEMORY_BYTES"),
        Case("valid 3000x3000 PNG over the pixel limit", smooth_png(3000, 3000), "LimitExceeded",
             limits={"max_input_pixels": 1_000_000}, peak_mb=20),
        Case("JPEG with 1 MB of data after it", jpeg + np.random.default_rng(0).bytes(MB), "ok",
             check=expect_size(96, 64)),
        Case("PNG with data after IEND", png + b"trailing garbage" * 1000, "ok", check=expect_size(96, 64)),
        Case("progressive JPEG with 3000 scans", progressive_jpeg_with_scans(3000), "ok", seconds=10,
             check=expect_size(256, 256)),
        Case("animated GIF", animated("GIF"), "UnsupportedImage", message="animat"),
        Case("animated PNG (APNG)", animated("PNG"), "UnsupportedImage", message="animat"),
        Case("animated WebP", animated("WEBP"), "UnsupportedImage", message="animat"),
        Case("multi-page TIFF", animated("TIFF"), "UnsupportedImage", message="multi-page"),
        Case("SVG with nested entities", billion_laughs_svg(), "InvalidImage", peak_mb=20),
        Case("JPEG + ZIP + script polyglot", jpeg + zip_and_script, "ok",
             check=expect_absent(b"PK\x03\x04", b"<script>")),
        Case("PNG with HTML in a text chunk", png_with_html_text(), "ok", check=expect_absent(b"<script>")),
        Case("GIF89a header then script", b"GIF89a=1;alert(1);//" + b"\0" * 64, "InvalidImage"),
        Case("1x1 PNG", encode(np.full((1, 1, 3), 7, np.uint8), ".png"), "ok", check=expect_size(1, 1)),
        Case("1x1 JPEG", encode(np.full((1, 1, 3), 7, np.uint8), ".jpg"), "ok", check=expect_size(1, 1)),
        Case("16-bit PNG", sixteen_bit_png(), "ok", check=expect_16_bit_scaled),
        Case("CMYK JPEG", cmyk_jpeg(), "ok", configure={"EncodeConfig": {"Format": "PNG"}}, check=expect_red),
        Case("PNG with a 2 MB ICC profile", huge_icc("PNG"), "ok", check=expect_size(96, 64)),
        Case("JPEG with a 2 MB ICC profile", huge_icc("JPEG"), "ok", check=expect_size(96, 64)),
        Case("seed template on a 1500x1500 photo", encode(small_photo(1500, 1500), ".jpg"), "ok",
             configure=SEED_WITHOUT_SR, seconds=30, peak_mb=300, check=expect_size(1500, 1500)),
    ]
    cases += [Case(f"EXIF orientation {n}", oriented_jpeg(n), "ok", configure={"EncodeConfig": {"Format": "PNG"}},
                   check=expect_marker(n)) for n in range(1, 9)]
    return cases


# -- the run --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    cases = corpus()
    directory = tmp_path_factory.mktemp("hostile")
    given, taken = directory / "cases.pickle", directory / "results.pickle"
    warm = encode(small_photo(), ".jpg")
    payload = [{"name": c.name, "data": c.data, "configure": c.configure, "limits": c.limits, "warm": warm}
               for c in cases]
    given.write_bytes(pickle.dumps(payload))
    done = subprocess.run([sys.executable, "-c", CHILD, str(given), str(taken)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    names = [line for line in done.stderr.splitlines() if line in {c.name for c in cases}]
    assert done.returncode == 0, f"the child died (exit {done.returncode}) during {names[-1:]}: {done.stderr[-2000:]}"
    return {result["name"]: result for result in pickle.loads(taken.read_bytes())}


@pytest.mark.parametrize("case", corpus(), ids=lambda case: case.name)
def test_hostile_input(results, case):
    result = results[case.name]
    assert result["outcome"] == case.outcome, result.get("message")
    if case.outcome != "ok":
        message = result["message"]
        assert message and "\n" not in message and "Traceback" not in message
        assert case.message.lower() in message.lower()
    elif case.check is not None:
        case.check(result)
    assert result["seconds"] < case.seconds
    assert result["peak_mb"] < case.peak_mb, f"peak {result['peak_mb']:.0f} MB"


def test_the_seed_template_stays_within_the_estimate(results):
    """The estimate made before decoding is an upper bound of what the run really took."""
    from vodimg.engine import memory

    case = next(c for c in corpus() if c.name.startswith("seed template"))
    estimate_mb = memory.estimate_for_bytes(case.data, case.configure) / MB
    assert results[case.name]["peak_mb"] <= estimate_mb
