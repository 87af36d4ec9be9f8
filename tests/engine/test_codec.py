"""Decode and encode: formats, relative quality, orientation, colour profiles, alpha, limits."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.engine.images import encode, photo
from vodimg.engine import InvalidImage, LimitExceeded, Limits, UnsupportedImage, process_image
from vodimg.engine import codec
from vodimg.engine.frame import Frame

LIMITS = Limits()


def pillow_bytes(bgr: np.ndarray, fmt: str, alpha: np.ndarray | None = None, **options) -> bytes:
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    image = Image.fromarray(rgb if alpha is None else np.dstack([rgb, alpha]))
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def pillow_pixels(data: bytes) -> np.ndarray:
    """An independent decode (Pillow) of our output, as RGB or RGBA."""
    return np.asarray(Image.open(io.BytesIO(data)))


def jpeg_quality_of(data: bytes) -> int:
    return codec.estimate_jpeg_quality(Image.open(io.BytesIO(data)).quantization)


def radial_alpha(height: int, width: int) -> np.ndarray:
    """0 in the corners, 255 in the middle, every value in between."""
    y, x = np.mgrid[0:height, 0:width]
    distance = np.hypot(y - height / 2, x - width / 2) / (min(height, width) / 2)
    return np.clip(np.rint((1.2 - distance) * 255), 0, 255).astype(np.uint8)


# --- format and quality defaults ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source_format, expected",
    [("JPEG", "JPEG"), ("PNG", "PNG"), ("BMP", "BMP"), ("WEBP", "WebP"), ("GIF", "PNG"), ("TIFF", "PNG")],
)
def test_output_format_defaults_to_the_source_format(source_format, expected):
    data = pillow_bytes(photo("coffee"), source_format)
    result = process_image(data, {})
    assert result.format == expected
    assert Image.open(io.BytesIO(result.data)).format == expected.upper()
    assert (result.width, result.height, result.size) == (600, 400, len(result.data))


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
@pytest.mark.parametrize("encoder", ["opencv", "pillow"])
def test_jpeg_source_quality_is_estimated_from_its_tables(quality, encoder):
    bgr = photo("chelsea")
    data = encode(bgr, ".jpg", quality) if encoder == "opencv" else pillow_bytes(bgr, "JPEG", quality=quality)
    assert abs(codec.decode(data, LIMITS).quality - quality) <= 3


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_default_quality_is_the_source_quality(quality):
    result = process_image(encode(photo("chelsea"), ".jpg", quality), {})
    assert abs(jpeg_quality_of(result.data) - quality) <= 3


@pytest.mark.parametrize("source_quality, requested", [(90, 50), (90, 100), (75, 80), (95, 1)])
def test_quality_is_relative_to_the_source(source_quality, requested):
    data = encode(photo("chelsea"), ".jpg", source_quality)
    result = process_image(data, {"EncodeConfig": {"Quality": requested}})
    expected = max(1, round(source_quality * requested / 100))
    assert abs(jpeg_quality_of(result.data) - expected) <= 1


def test_relative_quality_rounds_half_up_with_a_minimum_of_one():
    assert codec.relative_quality(75, 50) == 38  # 37.5
    assert codec.relative_quality(90, 50) == 45
    assert codec.relative_quality(50, 1) == 1  # 0.5
    assert codec.relative_quality(3, 10) == 1  # 0.3
    assert codec.relative_quality(80, None) == 80
    assert codec.relative_quality(100, 100) == 100


def test_lower_relative_quality_gives_a_smaller_jpeg():
    data = encode(photo("rocket"), ".jpg", 95)
    sizes = [process_image(data, {"EncodeConfig": {"Quality": q}}).size for q in (30, 60, 100)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_non_jpeg_source_counts_as_quality_100():
    data = pillow_bytes(photo("rocket"), "PNG")
    result = process_image(data, {"EncodeConfig": {"Format": "JPEG", "Quality": 60}})
    assert result.format == "JPEG"
    assert jpeg_quality_of(result.data) == 60


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_lossless_formats_ignore_quality(fmt):
    bgr = photo("coffee")
    result = process_image(pillow_bytes(bgr, "PNG"), {"EncodeConfig": {"Format": fmt, "Quality": 5}})
    assert np.array_equal(pillow_pixels(result.data)[..., ::-1], bgr)


def test_webp_uses_quality_and_is_lossless_at_a_lossless_source_quality():
    bgr = photo("coffee")
    png = pillow_bytes(bgr, "PNG")
    lossless = process_image(png, {"EncodeConfig": {"Format": "WebP"}})
    assert np.array_equal(pillow_pixels(lossless.data)[..., ::-1], bgr)
    low = process_image(png, {"EncodeConfig": {"Format": "WebP", "Quality": 20}})
    high = process_image(png, {"EncodeConfig": {"Format": "WebP", "Quality": 90}})
    assert low.size < high.size < lossless.size
    assert not np.array_equal(pillow_pixels(high.data)[..., ::-1], bgr)


def test_lossy_webp_source_is_not_re_encoded_losslessly():
    lossy = pillow_bytes(photo("coffee"), "WEBP", quality=70)
    assert not codec.decode(lossy, LIMITS).lossless
    assert codec.decode(pillow_bytes(photo("coffee"), "WEBP", lossless=True), LIMITS).lossless
    assert not codec.output_settings(codec.decode(lossy, LIMITS), None).webp_lossless


# --- orientation and colour -------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    bgr = photo("rocket")[:300, :200]  # not square, so a wrong turn changes the shape
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pillow_bytes(bgr, "JPEG", quality=95, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))[..., ::-1]
    decoded = codec.decode(data, LIMITS).frame.bgr
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected).max() <= 1  # same pixels, only turned


def test_exif_orientation_turns_alpha_with_the_colours():
    bgr = photo("rocket")[:300, :200]
    alpha = radial_alpha(300, 200)
    alpha[:20] = 0  # top band transparent
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    frame = codec.decode(pillow_bytes(bgr, "PNG", alpha, exif=exif.tobytes()), LIMITS).frame
    assert frame.bgr.shape[:2] == frame.alpha.shape == (200, 300)
    assert np.array_equal(frame.alpha, cv2.rotate(alpha, cv2.ROTATE_90_CLOCKWISE))
    assert np.array_equal(frame.bgr, cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE))


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def rgb_profile(description: str, red_xyz, green_xyz, blue_xyz) -> bytes:
    """A minimal ICC v2 RGB display profile: D50 colorants and gamma 2.2 curves."""

    def xyz(values):
        return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)

    text = description.encode("ascii")
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text) + 1) + text + b"\0" + bytes(12 + 67)),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(red_xyz)),
        (b"gXYZ", xyz(green_xyz)),
        (b"bXYZ", xyz(blue_xyz)),
        (b"rTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"),
        (b"gTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"),
        (b"bTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"),
        (b"cprt", b"text\0\0\0\0no copyright\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        payload += b"\0" * (-len(payload) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(payload))
        body += payload
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
        + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0)
        + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48)
    )  # fmt: skip
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


# sRGB's colorants adapted to D50 (as in every sRGB ICC profile).
SRGB_RED, SRGB_GREEN, SRGB_BLUE = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_colour_profile_is_converted_to_srgb(fmt):
    # A profile whose "red" channel is sRGB's green and vice versa: converting swaps them back.
    swapped = rgb_profile("swapped red green", SRGB_GREEN, SRGB_RED, SRGB_BLUE)
    bgr = photo("coffee")
    options = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    data = pillow_bytes(bgr, fmt, icc_profile=swapped, **options)
    decoded = codec.decode(data, LIMITS).frame.bgr.astype(int)
    expected = bgr[..., [0, 2, 1]].astype(int)  # B stays, G and R trade places
    assert np.abs(decoded - expected).mean() < 5  # gamma 2.2 differs from the sRGB curve in the darks
    assert np.abs(decoded - bgr.astype(int)).mean() > 20  # the conversion really happened


def test_srgb_profile_leaves_pixels_alone():
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    bgr = photo("coffee")
    frame = codec.decode(pillow_bytes(bgr, "PNG", icc_profile=srgb), LIMITS).frame
    assert np.array_equal(frame.bgr, bgr)


def test_grey_palette_and_16_bit_images_become_8_bit_bgr():
    bgr = photo("astronaut")
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    frame = codec.decode(encode(grey, ".png"), LIMITS).frame
    assert np.array_equal(frame.bgr, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))

    # 16-bit: value * 257 maps back to value exactly.
    for pixels in (grey, bgr):
        frame = codec.decode(encode(pixels.astype(np.uint16) * 257, ".png"), LIMITS).frame
        expected = pixels if pixels.ndim == 3 else cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        assert frame.bgr.dtype == np.uint8 and np.array_equal(frame.bgr, expected)

    palette = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).quantize(64)
    for fmt in ("PNG", "GIF", "BMP"):
        out = io.BytesIO()
        palette.save(out, fmt)
        frame = codec.decode(out.getvalue(), LIMITS).frame
        assert np.array_equal(frame.bgr, np.asarray(palette.convert("RGB"))[..., ::-1])


def test_cmyk_jpeg_is_converted():
    rgb = Image.fromarray(np.ascontiguousarray(photo("coffee")[..., ::-1]))
    out = io.BytesIO()
    rgb.convert("CMYK").save(out, "JPEG", quality=95)
    frame = codec.decode(out.getvalue(), LIMITS).frame
    assert np.abs(frame.bgr.astype(int) - photo("coffee")).mean() < 4


# --- alpha --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "WebP"])
def test_alpha_is_kept_in_png_and_webp(fmt):
    bgr, alpha = photo("coffee"), radial_alpha(400, 600)
    result = process_image(pillow_bytes(bgr, "PNG", alpha), {"EncodeConfig": {"Format": fmt}})
    rgba = pillow_pixels(result.data)
    assert rgba.shape == (400, 600, 4)
    assert np.array_equal(rgba[..., 3], alpha)
    visible = alpha > 0  # colours under full transparency carry no information
    assert np.array_equal(rgba[..., :3][visible], bgr[..., ::-1][visible])


def test_lossy_webp_keeps_alpha():
    bgr, alpha = photo("coffee"), radial_alpha(400, 600)
    result = process_image(pillow_bytes(bgr, "PNG", alpha), {"EncodeConfig": {"Format": "WebP", "Quality": 80}})
    rgba = pillow_pixels(result.data)
    assert np.abs(rgba[..., 3].astype(int) - alpha).max() <= 2


@pytest.mark.parametrize("fmt", ["JPEG", "BMP"])
def test_alpha_is_flattened_on_white_in_jpeg_and_bmp(fmt):
    bgr, alpha = photo("coffee"), radial_alpha(400, 600)
    result = process_image(pillow_bytes(bgr, "PNG", alpha), {"EncodeConfig": {"Format": fmt}})
    rgb = pillow_pixels(result.data).astype(float)
    assert rgb.shape == (400, 600, 3)
    a = alpha[..., None] / 255.0
    expected = bgr[..., ::-1] * a + 255.0 * (1 - a)
    tolerance = 0.5 if fmt == "BMP" else 4  # BMP is exact up to rounding; JPEG q100 nearly so
    assert np.abs(rgb - expected).mean() <= tolerance
    assert rgb[alpha == 0].min() >= 250  # fully transparent corners are white


# --- refused input ------------------------------------------------------------------------------


def animated(fmt: str) -> bytes:
    frames = [Image.fromarray(np.full((64, 64, 3), value, np.uint8)) for value in (0, 128, 255)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_is_refused_fast(fmt):
    data = animated(fmt)
    started = time.perf_counter()
    with pytest.raises(UnsupportedImage, match="animation is not supported"):
        process_image(data, {})
    assert time.perf_counter() - started < 0.05


def test_multi_page_tiff_is_refused():
    pages = [Image.fromarray(np.full((64, 64, 3), value, np.uint8)) for value in (0, 255)]
    out = io.BytesIO()
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(UnsupportedImage, match="multi-page"):
        process_image(out.getvalue(), {})


def test_multi_picture_jpeg_is_its_first_picture():
    first, second = photo("coffee"), photo("coffee")[::-1].copy()
    out = io.BytesIO()
    Image.fromarray(first[..., ::-1].copy()).save(
        out, "MPO", save_all=True, append_images=[Image.fromarray(second[..., ::-1].copy())], quality=95
    )
    assert Image.open(io.BytesIO(out.getvalue())).format == "MPO"
    result = process_image(out.getvalue(), {})
    assert result.format == "JPEG" and abs(jpeg_quality_of(result.data) - 95) <= 1
    decoded = np.asarray(Image.open(io.BytesIO(result.data)))[..., ::-1].astype(int)
    assert np.abs(decoded - first).mean() < 3


def test_single_frame_gif_is_accepted():
    data = pillow_bytes(photo("coffee"), "GIF")
    assert process_image(data, {}).format == "PNG"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG claiming a huge size: a decoder that trusts it would allocate width*height*3."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def real_bomb_png(width: int, height: int) -> bytes:
    """A complete, valid all-black grey PNG: a few hundred KB that decode to width*height bytes."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize("make", [lambda: png_header_only(100_000, 100_000), lambda: real_bomb_png(10_000, 8_000)])
def test_decompression_bomb_is_refused_from_the_header(make):
    data = make()
    assert len(data) < 1_000_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(LimitExceeded, match="pixels"):
            process_image(data, {}, Limits())
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.05
    assert peak < 2_000_000  # nothing near the 80-30000 MB the pixels would need


def test_pixel_limit_is_configurable():
    data = encode(photo("coffee"), ".png")  # 600x400 = 240000 pixels
    with pytest.raises(LimitExceeded, match="240000 pixels"):
        process_image(data, {}, Limits(max_input_pixels=239_999))
    assert process_image(data, {}, Limits(max_input_pixels=240_000)).width == 600


def test_file_size_limit():
    data = encode(photo("coffee"), ".png")
    with pytest.raises(LimitExceeded, match="bytes"):
        process_image(data, {}, Limits(max_input_bytes=len(data) - 1))


def test_output_pixel_limit():
    data = encode(photo("coffee"), ".png")
    with pytest.raises(LimitExceeded, match="result"):
        process_image(data, {}, Limits(max_output_pixels=1000))


def corruptions() -> list[tuple[str, bytes]]:
    cases = [("empty", b""), ("text", b"hello, this is not an image"), ("random", np.random.default_rng(1).bytes(5000))]
    for ext in (".jpg", ".png", ".webp", ".bmp", ".gif", ".tiff"):
        if ext in (".gif", ".tiff"):
            data = pillow_bytes(photo("coffee"), ext[1:].upper())
        else:
            data = encode(photo("coffee"), ext)
        cases.append((f"truncated{ext}", data[: len(data) // 2]))
        cases.append((f"header only{ext}", data[:40]))
    png = encode(photo("coffee"), ".png")
    middle = len(png) // 2
    cases.append(("garbled.png", png[:middle] + bytes(b ^ 0x5A for b in png[middle : middle + 64]) + png[middle + 64 :]))
    return cases


@pytest.mark.parametrize("name, data", corruptions(), ids=[name for name, _ in corruptions()])
def test_corrupt_or_truncated_bytes_are_an_invalid_image(name, data):
    with pytest.raises(InvalidImage) as caught:
        process_image(data, {})
    message = str(caught.value)
    assert message and "\n" not in message


def test_unsupported_format_is_an_invalid_image():
    out = io.BytesIO()
    Image.fromarray(photo("coffee")).save(out, "PPM")
    with pytest.raises(InvalidImage, match="supported format"):
        process_image(out.getvalue(), {})


# --- encode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", codec.OUTPUT_FORMATS)
def test_encoding_is_deterministic_and_carries_no_timestamp(fmt):
    frame = Frame(photo("rocket"), radial_alpha(427, 640))
    settings = codec.EncodeSettings(format=fmt, quality=85)
    first = codec.encode(frame, settings)
    assert codec.encode(Frame(frame.bgr.copy(), frame.alpha.copy()), settings) == first
    assert b"tIME" not in first


def test_webp_side_limit():
    frame = Frame(np.zeros((16, 16400, 3), np.uint8))
    with pytest.raises(LimitExceeded, match="WebP"):
        codec.encode(frame, codec.EncodeSettings(format="WebP", quality=80))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_mutated_files_decode_or_fail_with_one_engine_error(fmt):
    """Random byte changes and cuts (seeded): an image or an EngineError, nothing else."""
    from vodimg.engine import EngineError

    source = pillow_bytes(photo("coffee")[:96, :128], fmt)
    rng = np.random.default_rng(7)
    for _ in range(40):
        mutated = bytearray(source)
        for _ in range(rng.integers(1, 8)):
            mutated[rng.integers(0, len(mutated))] = rng.integers(0, 256)
        if rng.random() < 0.3:
            mutated = mutated[: rng.integers(1, len(mutated))]
        try:
            result = process_image(bytes(mutated), {})
        except EngineError as err:
            assert str(err) and "\n" not in str(err)
        else:
            assert result.size == len(result.data) > 0
