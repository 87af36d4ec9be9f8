"""Working memory of one image, estimated from its header and the planned steps before any pixel is
decoded, and refused above ``Limits.max_memory_bytes`` (VODIMG_MAX_MEMORY_BYTES, default 2 GiB).

The estimate is the largest of: decoding (bytes per pixel of the decoder path), each planned step
(its ``StepSpec.memory`` bytes per pixel of the larger of its input and output, so super-resolution
counts at its output size, plus its ``memory_fixed``) and encoding; an alpha plane adds its byte
per pixel throughout. The
figures are peak RSS above the imports of a fresh process, measured by ``python -m bench.memory --steps``
and rounded up, so the estimate errs on the high side. It covers the image, not the process (the
interpreter, libraries and loaded models, about 50-200 MB, come on top): what the limit bounds is
what one hostile header can make a worker allocate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from vodimg.engine.errors import LimitExceeded

MB = 1024 * 1024
# Decoding, in bytes per output pixel, the decoded BGR frame (3) included; measured 5.8 (OpenCV
# JPEG), 12.0 (OpenCV 16-bit PNG), 7.7-9.0 (Pillow GIF, CMYK JPEG). OpenCV (plain JPEG, PNG,
# WebP, BMP) holds its own buffer next to the frame, 16-bit samples for 16-bit files; Pillow
# (colour profiles, CMYK, palettes, GIF, TIFF) holds its image, an RGB copy and the BGR frame.
DECODE_BYTES_PER_PIXEL = {"opencv": 6.5, "opencv-16bit": 13.0, "pillow": 13.0}
# Encoding: the frame, the encoder's row buffers and the compressed output (at most about the
# frame's size for the formats written); measured 4.0.
ENCODE_BYTES_PER_PIXEL = 6.0
ALPHA_BYTES_PER_PIXEL = 1.0


def estimate(header, steps) -> int:
    """Bytes one image needs at its peak. ``header``: a codec.ImageHeader (upright width and
    height, decoder path, alpha); ``steps``: the planned steps (pipeline.PlannedStep)."""
    width, height = header.width, header.height
    alpha = ALPHA_BYTES_PER_PIXEL if header.has_alpha else 0.0
    peak = (DECODE_BYTES_PER_PIXEL[header.decoder] + alpha) * width * height
    for step in steps:
        out_width, out_height = output_size(step, width, height)
        pixels = max(width * height, out_width * out_height)
        peak = max(peak, (step.spec.memory + alpha) * pixels + step.spec.memory_fixed)
        width, height = out_width, out_height
    peak = max(peak, (ENCODE_BYTES_PER_PIXEL + alpha) * width * height)
    return int(peak)


def output_size(step, width: int, height: int) -> tuple[int, int]:
    """The size a step turns ``width`` x ``height`` into (only super-resolution changes it)."""
    if step.spec.module != "superres":
        return width, height
    if step.spec.function == "apply":  # SuperResolution: always x2
        return 2 * width, 2 * height
    from vodimg.engine.steps.superres import target_size  # already imported: load_step ran

    target = target_size(width, height, step.options)
    return target.width, target.height


def check(header, steps, limits) -> None:
    """Refuse the image before decoding when its estimate exceeds ``limits.max_memory_bytes``."""
    needed = estimate(header, steps)
    if needed > limits.max_memory_bytes:
        raise LimitExceeded(
            f"processing this {header.width}x{header.height} image with the template's steps needs "
            f"about {needed / MB:.0f} MB of memory, more than the limit of {limits.max_memory_bytes} "
            f"bytes ({limits.max_memory_bytes / MB:.0f} MB, VODIMG_MAX_MEMORY_BYTES)"
        )


def estimate_for_bytes(data: bytes, configure: dict) -> int:
    """The estimate for encoded image bytes and a ProcessImageConfigure (for benchmarks and tools;
    reads the header only)."""
    from vodimg.engine import codec, pipeline
    from vodimg.engine.limits import Limits

    steps = pipeline.plan(configure or {})
    for step in steps:
        pipeline.load_step(step)
    return estimate(codec.read_header(data, Limits(max_input_pixels=2**62, max_input_bytes=2**62)), steps)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``): between steps, the
    small blocks freed by one step (strips, tiles, OpenCV buffers) would otherwise stay in this
    process's RSS next to the next step's frames."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
