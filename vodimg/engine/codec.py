"""Decode untrusted image bytes into a Frame, and encode a Frame (see docs/engine.md, "Codec").

Decode: Pillow reads the header only (format, size, mode, EXIF, ICC profile, frame count) so the
limits are checked before any pixel is allocated. Pixels of complete, plain sRGB JPEG/PNG/WebP/BMP
files are decoded by OpenCV straight into BGR (half the cost of Pillow plus a channel swap);
everything else (colour profiles, CMYK, palettes of other formats, GIF, TIFF, truncated files)
goes through Pillow, whose errors are precise.

Encode: OpenCV for JPEG, PNG, BMP and lossy WebP (libwebp's defaults; Pillow writes the same
WebP bytes 1.3x slower); Pillow for lossless WebP, whose effort OpenCV cannot set. No timestamps
or metadata are written, so the bytes are a pure function of the pixels and the settings.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageCms, JpegImagePlugin, UnidentifiedImageError

from vodimg.engine.errors import InvalidImage, LimitExceeded, UnsupportedImage
from vodimg.engine.frame import Frame, strips_of
from vodimg.engine.limits import Limits

# Pillow format name -> our source format name. Only these decoders are ever tried.
SOURCE_FORMATS = {
    "JPEG": "JPEG",
    "MPO": "JPEG",  # phone JPEGs with a multi-picture trailer: the first picture is the photo
    "PNG": "PNG",
    "BMP": "BMP",
    "WEBP": "WebP",
    "GIF": "GIF",
    "TIFF": "TIFF",
}
# The Pillow decoders tried (the JPEG one also returns MPO files).
PILLOW_DECODERS = ["JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF"]
OUTPUT_FORMATS = ("JPEG", "PNG", "BMP", "WebP")
# Output format for sources that are not one of OUTPUT_FORMATS (GIF, TIFF): lossless, keeps alpha.
FALLBACK_OUTPUT_FORMAT = "PNG"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "WebP": "webp"}
# Largest side each encoder can write.
MAX_SIDE = {"JPEG": 65500, "PNG": 1 << 30, "BMP": 1 << 30, "WebP": 16383}

LOSSLESS_QUALITY = 100  # the quality every non-JPEG source counts as
WEBP_LOSSLESS_METHOD, WEBP_LOSSLESS_EFFORT = 1, 25  # 28% smaller than PNG, 4x faster than defaults
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
# JPEG chroma subsampling: Pillow's get_sampling() code -> OpenCV flag.
JPEG_SAMPLING = {
    0: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    1: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    2: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
}
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Larger embedded colour profiles are ignored (the pixels taken as sRGB, as for an unreadable
# profile): real ones are 0.5-600 KB, and Pillow's PNG reader refuses the whole file above 1 MiB.
MAX_ICC_PROFILE_BYTES = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112


@dataclass
class DecodedImage:
    frame: Frame
    format: str  # SOURCE_FORMATS value: JPEG, PNG, BMP, WebP, GIF or TIFF
    quality: int  # 1-100: estimated from a JPEG's quantisation tables, LOSSLESS_QUALITY otherwise
    lossless: bool  # no lossy compression in the source (PNG, BMP, GIF, TIFF, lossless WebP)
    jpeg_sampling: int | None  # a JPEG source's chroma subsampling (JPEG_SAMPLING key), else None


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, before any pixel is decoded."""

    width: int  # upright: after the EXIF orientation
    height: int
    format: str  # SOURCE_FORMATS value
    has_alpha: bool
    decoder: str  # "opencv", "opencv-16bit" or "pillow": what will decode the pixels


@dataclass(frozen=True)
class EncodeSettings:
    format: str  # one of OUTPUT_FORMATS
    quality: int  # 1-100; used by JPEG and lossy WebP
    webp_lossless: bool = False
    jpeg_sampling: int | None = None  # JPEG_SAMPLING key; None: by quality (see encode_jpeg)


# ---------------------------------------------------------------------------------------------
# Decode


def decode(data: bytes, limits: Limits,
           before_pixels: Callable[[ImageHeader], None] | None = None) -> DecodedImage:
    """Bytes to an sRGB BGR Frame, upright, with alpha kept apart. ``before_pixels(header)`` runs
    once the header is read and checked, before any pixel is decoded (it may raise to refuse the
    image). Raises EngineError subclasses."""
    with _quiet_pillow():
        return _decode(data, limits, before_pixels)


def read_header(data: bytes, limits: Limits) -> ImageHeader:
    """The header of an image, checked against the limits as ``decode`` checks it; no pixel is
    decoded. Raises EngineError subclasses."""
    with _quiet_pillow():
        return _header(*_open_checked(data, limits))


@contextlib.contextmanager
def _quiet_pillow():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's remarks on hostile files: the errors say enough
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _open_checked(data: bytes, limits: Limits) -> tuple[bytes, Image.Image]:
    """(the bytes to decode, the opened header) once the size limits and frame count are checked."""
    if len(data) > limits.max_input_bytes:
        raise LimitExceeded(
            f"the image file is {len(data)} bytes, more than the limit of {limits.max_input_bytes}"
        )
    data = _without_oversized_png_profile(data)
    im = _open_header(data, limits)
    _refuse_multi_frame(im, SOURCE_FORMATS[im.format])
    return data, im


def _header(data: bytes, im: Image.Image) -> ImageHeader:
    turned = _orientation(im) in (5, 6, 7, 8)
    width, height = (im.height, im.width) if turned else (im.width, im.height)
    if not _opencv_can_decode(im, data):
        decoder = "pillow"
    else:  # OpenCV holds 16-bit samples next to the 8-bit frame made from them
        decoder = "opencv-16bit" if im.mode.startswith("I") or _rawmode_is_16bit(im) else "opencv"
    return ImageHeader(width, height, SOURCE_FORMATS[im.format], _has_alpha(im), decoder)


def _rawmode_is_16bit(im: Image.Image) -> bool:
    return any("16" in str(tile.args) for tile in getattr(im, "tile", None) or [])


def _decode(data: bytes, limits: Limits, before_pixels) -> DecodedImage:
    data, im = _open_checked(data, limits)
    source_format = SOURCE_FORMATS[im.format]
    header = _header(data, im)
    if before_pixels is not None:
        before_pixels(header)
    orientation = _orientation(im)
    if header.decoder != "pillow":
        frame = _decode_with_opencv(data, _has_alpha(im))
        if frame is None:  # OpenCV found the pixel data corrupt: let Pillow say why
            frame = _decode_with_pillow(im)
    else:
        frame = _decode_with_pillow(im)
    frame = _apply_orientation(frame, orientation)
    is_jpeg = source_format == "JPEG"
    return DecodedImage(
        frame=frame,
        format=source_format,
        quality=estimate_jpeg_quality(im.quantization) if is_jpeg else LOSSLESS_QUALITY,
        lossless=not is_jpeg and not (source_format == "WebP" and _is_lossy_webp(data)),
        jpeg_sampling=_jpeg_sampling(im) if is_jpeg else None,
    )


def _open_header(data: bytes, limits: Limits) -> Image.Image:
    """Parse the header only; refuse what exceeds the pixel limit before anything is decoded."""
    Image.MAX_IMAGE_PIXELS = limits.max_input_pixels  # Pillow's own bomb check agrees with ours
    try:
        im = Image.open(io.BytesIO(data), formats=PILLOW_DECODERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise LimitExceeded(_too_many_pixels(_pillow_bomb_size(err), limits)) from None
    except UnidentifiedImageError:
        raise InvalidImage(
            "the data is not an image in a supported format (JPEG, PNG, BMP, WebP, GIF, TIFF)"
        ) from None
    except Exception as err:  # any parser failure on hostile bytes is a bad image, never a crash
        raise InvalidImage(f"the image header is corrupt: {_one_line(err)}") from None
    if im.width < 1 or im.height < 1:
        raise InvalidImage(f"the image has no pixels ({im.width}x{im.height})")
    if im.width * im.height > limits.max_input_pixels:
        raise LimitExceeded(_too_many_pixels(im.size, limits))
    return im


def _without_oversized_png_profile(data: bytes) -> bytes:
    """The PNG without its iCCP chunk when the profile inflates past MAX_ICC_PROFILE_BYTES (Pillow
    would refuse the whole file); anything else as it is. Only the chunks before the image data
    are looked at, and the profile is inflated no further than the bound."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 12 + length
        if kind in (b"IDAT", b"IEND") or end > len(data):
            return data
        if kind == b"iCCP":
            body = data[offset + 8 : offset + 8 + length]
            inflater = zlib.decompressobj()
            try:
                inflated = inflater.decompress(body[body.find(b"\0") + 2 :], MAX_ICC_PROFILE_BYTES + 1)
            except zlib.error:
                return data  # a corrupt profile: Pillow reads past it and we ignore it later
            return data if len(inflated) <= MAX_ICC_PROFILE_BYTES else data[:offset] + data[end:]
        offset = end
    return data


def _too_many_pixels(pixels: int | tuple[int, int] | None, limits: Limits) -> str:
    limit = f"the limit of {limits.max_input_pixels} pixels"
    if isinstance(pixels, tuple):
        return f"the image is {pixels[0]}x{pixels[1]} = {pixels[0] * pixels[1]} pixels, more than {limit}"
    if pixels is None:
        return f"the image has more pixels than {limit}"
    return f"the image has {pixels} pixels, more than {limit}"


def _pillow_bomb_size(err: Exception) -> int | None:
    """Pillow's bomb errors state the pixel count: "Image size (N pixels) exceeds limit ..."."""
    match = re.search(r"\((\d+) pixels\)", str(err))
    return int(match.group(1)) if match else None


def _refuse_multi_frame(im: Image.Image, source_format: str) -> None:
    if source_format == "JPEG":  # MPO extra pictures are previews, not animation
        return
    try:
        several = getattr(im, "is_animated", False)  # looks for a second frame, not all of them
    except Exception as err:
        raise InvalidImage(f"the image is corrupt: {_one_line(err)}") from None
    if several and source_format == "TIFF":
        raise UnsupportedImage("multi-page TIFF is not supported")
    if several:
        raise UnsupportedImage(f"animation is not supported (animated {source_format})")


def _orientation(im: Image.Image) -> int:
    """EXIF Orientation 1-8 from the header (a PNG's eXIf chunk counts when it precedes IDAT)."""
    try:
        if im.format == "PNG":  # PNG getexif() would decode every pixel to look past IDAT
            exif = Image.Exif()
            exif.load(im.info.get("exif") or b"")
        else:
            exif = im.getexif()
        value = exif.get(EXIF_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: the picture itself may still be fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or "transparency" in im.info


def _opencv_can_decode(im: Image.Image, data: bytes) -> bool:
    """Plain sRGB JPEG/PNG/WebP/BMP whose data is complete (truncation is Pillow's to report)."""
    if im.mode not in ("RGB", "RGBA", "L", "LA", "P", "I", "I;16", "I;16B"):
        return False
    if _icc_profile(im) is not None:
        return False
    checks = {
        "JPEG": _jpeg_complete,
        "MPO": _jpeg_complete,
        "PNG": lambda d: d.endswith(b"IEND\xaeB`\x82"),
        "WEBP": lambda d: len(d) >= 8 + struct.unpack_from("<I", d, 4)[0],
        "BMP": lambda d: len(d) >= struct.unpack_from("<I", d, 2)[0],
    }
    check = checks.get(im.format)
    return check is not None and check(data)


def _jpeg_complete(data: bytes) -> bool:
    # An end-of-image marker after the last start-of-scan (neither can occur inside entropy data).
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda") > 0


def _decode_with_opencv(data: bytes, has_alpha: bool) -> Frame | None:
    flags = (
        cv2.IMREAD_UNCHANGED  # keeps alpha and 16-bit depth, ignores EXIF orientation
        if has_alpha
        else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    )
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    except MemoryError:
        raise LimitExceeded("the image needs more memory to decode than is available") from None
    if pixels is None:
        return None
    if pixels.dtype == np.uint16:
        pixels = cv2.convertScaleAbs(pixels, alpha=255.0 / 65535.0)  # rounds to nearest
    if pixels.ndim == 2:
        return Frame(cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR))
    if pixels.shape[2] == 4:
        return Frame(cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR), np.ascontiguousarray(pixels[..., 3]))
    return Frame(np.ascontiguousarray(pixels))


def _decode_with_pillow(im: Image.Image) -> Frame:
    try:
        im.load()
        return _pillow_to_frame(im)
    except (Image.DecompressionBombError, MemoryError):
        raise LimitExceeded("the image needs more memory to decode than is available") from None
    except Exception as err:
        raise InvalidImage(f"the image data is corrupt or truncated: {_one_line(err)}") from None


def _pillow_to_frame(im: Image.Image) -> Frame:
    profile = _icc_profile(im)
    alpha = None
    if _has_alpha(im):
        rgba = im.convert("RGBA") if im.mode not in ("LA", "La") else im.convert("LA")
        alpha = np.array(rgba.getchannel("A"))
    colour = _to_8bit(im)
    if profile is not None:
        colour = _to_srgb(colour, profile)
    if colour.mode != "RGB":
        colour = colour.convert("RGB")
    return Frame(cv2.cvtColor(np.asarray(colour), cv2.COLOR_RGB2BGR), alpha)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Colour channels as RGB, L or CMYK with 8 bits each (16-bit and float scaled, not clipped)."""
    if im.mode in ("RGB", "L", "CMYK"):
        return im
    if im.mode.startswith("I"):  # 16-bit (or 32-bit integer) grey: full range is 0-65535
        values = np.clip(np.asarray(im, dtype=np.float32), 0, 65535)
        return Image.fromarray(np.rint(values * (255.0 / 65535.0)).astype(np.uint8))
    if im.mode == "F":  # float grey: 0-1 if it fits, else taken as 0-255
        values = np.asarray(im, dtype=np.float32)
        scale = 255.0 if float(np.nanmax(values)) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8))
    if im.mode in ("LA", "La", "1"):
        return im.convert("L")
    return im.convert("RGB")


def _icc_profile(im: Image.Image) -> bytes | None:
    """The embedded ICC profile unless it is (or claims to be) sRGB."""
    icc = im.info.get("icc_profile")
    if not icc or len(icc) > MAX_ICC_PROFILE_BYTES:  # an oversized profile is ignored: sRGB
        return None
    return None if _is_srgb(bytes(icc)) else bytes(icc)


@lru_cache(maxsize=64)
def _is_srgb(icc: bytes) -> bool:
    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except Exception:
        return True  # an unreadable profile is ignored: the pixels are taken as sRGB
    return "srgb" in description.lower()


@lru_cache(maxsize=32)
def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.buildTransform(
            source, ImageCms.createProfile("sRGB"), mode, "RGB", ImageCms.Intent.PERCEPTUAL
        )
    except Exception:
        return None  # a profile that does not fit the pixels (e.g. RGB profile on grey) is ignored


def _to_srgb(colour: Image.Image, icc: bytes) -> Image.Image:
    transform = _transform_to_srgb(icc, colour.mode)
    return colour if transform is None else ImageCms.applyTransform(colour, transform)


def _apply_orientation(frame: Frame, orientation: int) -> Frame:
    """Make the picture upright as EXIF Orientation (1-8) says."""
    if orientation == 1:
        return frame

    def turn(pixels: np.ndarray) -> np.ndarray:
        if orientation in (5, 6, 7, 8):
            pixels = cv2.rotate(
                pixels, cv2.ROTATE_90_CLOCKWISE if orientation in (5, 6) else cv2.ROTATE_90_COUNTERCLOCKWISE
            )
        if orientation in (2, 5, 7):
            pixels = cv2.flip(pixels, 1)
        elif orientation == 3:
            pixels = cv2.rotate(pixels, cv2.ROTATE_180)
        elif orientation == 4:
            pixels = cv2.flip(pixels, 0)
        return np.ascontiguousarray(pixels)

    return Frame(turn(frame.bgr), None if frame.alpha is None else turn(frame.alpha))


def _jpeg_sampling(im: Image.Image) -> int | None:
    sampling = JpegImagePlugin.get_sampling(im)
    return sampling if sampling in JPEG_SAMPLING else None


def _is_lossy_webp(data: bytes) -> bool:
    """True when the WebP's image chunk is VP8 (lossy) rather than VP8L (lossless)."""
    offset = 12
    while offset + 8 <= len(data):
        tag = data[offset : offset + 4]
        if tag == b"VP8 ":
            return True
        if tag == b"VP8L":
            return False
        size = struct.unpack_from("<I", data, offset + 4)[0]
        offset += 8 + size + (size & 1)
    return True


# JPEG quality estimation -----------------------------------------------------------------------

# The IJG (libjpeg) example tables, natural (row-major) order, quality 50.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])  # fmt: skip
IJG_CHROMINANCE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32)  # fmt: skip


def _ijg_tables(base: np.ndarray) -> np.ndarray:
    """Row q-1: the table libjpeg writes at quality q (jpeg_quality_scaling, baseline clamp)."""
    quality = np.arange(1, 101)[:, None]
    scale = np.where(quality < 50, 5000 // quality, 200 - 2 * quality)
    return np.clip((base[None, :] * scale + 50) // 100, 1, 255)


SCALED_LUMINANCE = _ijg_tables(IJG_LUMINANCE)
SCALED_CHROMINANCE = _ijg_tables(IJG_CHROMINANCE)


def estimate_jpeg_quality(tables: dict[int, list[int]] | None) -> int:
    """The libjpeg quality 1-100 whose tables fit best (exact for libjpeg-made files).

    Error is the summed absolute difference over the luminance table and, when there is one,
    the first chrominance table; ties go to the higher quality.
    """
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return LOSSLESS_QUALITY  # no usable tables: treat like other sources
    error = np.abs(SCALED_LUMINANCE - np.asarray(tables[0])[None, :]).sum(axis=1)
    if 1 in tables and len(tables[1]) == 64:
        error += np.abs(SCALED_CHROMINANCE - np.asarray(tables[1])[None, :]).sum(axis=1)
    best = np.flatnonzero(error == error.min())
    return int(best[-1]) + 1


# ---------------------------------------------------------------------------------------------
# Encode


def output_settings(source: DecodedImage, encode_config: dict | None) -> EncodeSettings:
    """EncodeConfig (Format, Quality) applied to the source's defaults (docs/engine.md)."""
    config = encode_config or {}
    default_format = source.format if source.format in OUTPUT_FORMATS else FALLBACK_OUTPUT_FORMAT
    fmt = _output_format_name(config.get("Format") or default_format)
    quality = relative_quality(source.quality, config.get("Quality"))
    return EncodeSettings(
        format=fmt,
        quality=quality,
        webp_lossless=fmt == "WebP" and source.lossless and quality == LOSSLESS_QUALITY,
        jpeg_sampling=source.jpeg_sampling,
    )


def _output_format_name(name: str) -> str:
    for fmt in OUTPUT_FORMATS:
        if fmt.lower() == str(name).lower():
            return fmt
    raise ValueError(f"unknown output format {name!r}")  # the validator let a bad value through


def relative_quality(source_quality: int, requested: int | None) -> int:
    """Quality is a percentage of the source's: round half up, at least 1, at most 100."""
    if requested is None:
        return source_quality
    return max(1, min(100, math.floor(source_quality * requested / 100 + 0.5)))


def encode(frame: Frame, settings: EncodeSettings) -> bytes:
    limit = MAX_SIDE[settings.format]
    if max(frame.width, frame.height) > limit:
        raise LimitExceeded(
            f"{settings.format} output is at most {limit} pixels per side, "
            f"the result is {frame.width}x{frame.height}"
        )
    if settings.format == "JPEG":
        return _imencode(".jpg", flatten_on_white(frame), _jpeg_params(settings))
    if settings.format == "BMP":
        return _imencode(".bmp", flatten_on_white(frame), [])
    if settings.format == "PNG":
        return _imencode(".png", _with_alpha(frame), PNG_PARAMS)
    return _encode_webp(frame, settings)


def _jpeg_params(settings: EncodeSettings) -> list[int]:
    """Baseline, no Huffman optimisation (3x the time for 1% of the size).

    Chroma subsampling: a JPEG source's own; otherwise 4:4:4 from quality 90 up, else 4:2:0.
    """
    sampling = settings.jpeg_sampling
    if sampling is None:
        sampling = 0 if settings.quality >= 90 else 2
    return [
        cv2.IMWRITE_JPEG_QUALITY, settings.quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, JPEG_SAMPLING[sampling],
    ]  # fmt: skip


def _imencode(ext: str, pixels: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(ext, pixels, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {ext} of shape {pixels.shape}")
    return buffer.tobytes()


def _with_alpha(frame: Frame) -> np.ndarray:
    if frame.alpha is None:
        return frame.bgr
    return np.dstack([frame.bgr, frame.alpha])


def flatten_on_white(frame: Frame) -> np.ndarray:
    """Composite over white: out = (c * a + 255 * (255 - a)) / 255, rounded."""
    if frame.alpha is None:
        return frame.bgr
    out = np.empty_like(frame.bgr)
    for _, rows, _ in strips_of(frame.bgr):  # strips bound the temporaries
        # uint16 holds the largest sum, 255 * 255 + 127
        alpha = frame.alpha[rows, :, None].astype(np.uint16)
        mixed = frame.bgr[rows].astype(np.uint16) * alpha
        mixed += 255 * (255 - alpha) + 127
        mixed //= 255
        out[rows] = mixed
    return out


def _encode_webp(frame: Frame, settings: EncodeSettings) -> bytes:
    if not settings.webp_lossless:  # alpha, when there is one, is compressed losslessly
        return _imencode(".webp", _with_alpha(frame), [cv2.IMWRITE_WEBP_QUALITY, settings.quality])
    size = (frame.width, frame.height)
    if frame.alpha is None:
        image = Image.frombuffer("RGB", size, np.ascontiguousarray(frame.bgr), "raw", "BGR", 0, 1)
    else:
        image = Image.frombuffer("RGBA", size, _with_alpha(frame), "raw", "BGRA", 0, 1)
    out = io.BytesIO()
    image.save(out, "WEBP", lossless=True, method=WEBP_LOSSLESS_METHOD, quality=WEBP_LOSSLESS_EFFORT, exact=False)
    return out.getvalue()


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]
