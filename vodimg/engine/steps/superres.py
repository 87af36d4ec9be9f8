"""Super-resolution: the SuperResolution and AdvancedSuperResolution capabilities.

Two entry points, one per capability (the validator makes sure at most one is ON), and
``check(options)``, which the pipeline calls before decoding:

- :func:`apply` for ``SuperResolutionInfo``: ``{"Switch", "Type": lq|hq, "Size": 2}``, always x2.
- :func:`apply_advanced` for ``AdvancedSuperResolutionConfig``: ``{"Switch", "Type":
  standard|super, "Mode": percent|fixed|aspect, "Percent", "Width", "Height", "LongSide",
  "ShortSide"}``, to an exact output size.

Which upscaler each type runs (measured in ``bench/quality_sr.py``, see docs/engine-superres.md):

- ``lq``: waifu2x photo x2 at the denoise level(s) the source calls for (``denoise_levels``):
  from the JPEG quality the codec estimated from the file's tables (``StepContext.source_quality``)
  and the frame's noise estimate; two levels are averaged.
- ``hq``: SPAN x2 on clean lossless sources (the sharpest; trained on clean bicubic-downscaled
  photos). On JPEG or noisy sources, where SPAN falls below bicubic, ``lq``'s levels averaged
  with their run on the mirrored image (a self-ensemble: never below ``lq``, twice its cost).
- ``super``: on clean lossless sources the mean of SPAN x2 and waifu2x photo x2 denoise level 0
  (SPAN alone is best on clean bicubic-downscaled sources but weak on box-downscaled ones, where
  waifu2x wins; the mean keeps most of each one's gain); on JPEG or noisy sources as ``hq``.
- ``standard``: learned edge-adaptive filters on luminance over bicubic, chroma bicubic (the fast
  path: under half a second per input megapixel).

Size limits: SuperResolution's output (always x2) is bounded only by the configurable output
pixel limit (``StepContext.max_output_pixels``, ``VODIMG_MAX_OUTPUT_PIXELS``) and the deadline;
AdvancedSuperResolution also by its documented 4096 pixels per side. Models run in tiles, so
memory is the input and output arrays plus one tile's activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from vodimg.engine import codec, filter_sr, ncnn_model
from vodimg.engine.errors import InvalidConfig, LimitExceeded
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps.denoise import estimate_sigma

MAX_SIDE = 4096  # AdvancedSuperResolution's documented limit per output side
DEFAULT_PERCENT = 2.0

# waifu2x photo denoise levels for a source, weakest to strongest; two levels: their outputs'
# mean. Chosen on tuning photos (docs/engine-superres.md, "Compressed sources").
DENOISE_STRENGTHS: tuple[tuple[int, ...], ...] = ((0,), (0, 1), (2, 3), (3,))
# (lowest estimated JPEG quality, strength index); lossless sources count as quality 100.
QUALITY_STRENGTH = ((90, 0), (80, 1), (70, 2), (0, 3))
# (lowest noise estimate, strength index): real noise needs the strongest levels whatever the file.
NOISE_STRENGTH = ((7.0, 3), (4.5, 2), (0.0, 0))

Upscaler = Callable[[np.ndarray, Callable[[float], None], Callable[[], None]], np.ndarray]


@dataclass(frozen=True)
class Size:
    width: int
    height: int


# ---------------------------------------------------------------------------------------------
# Entry points


def check(options: dict) -> None:
    """Refuse bad options before any pixel is decoded (the pipeline calls this for both
    capabilities; their Types do not overlap). Size limits need the image: ``apply*`` checks them."""
    if options.get("Type") in ADVANCED_TYPES or ADVANCED_ONLY_MEMBERS & options.keys():
        _advanced_type(options)
        target_size(1, 1, options)
    else:
        _basic_type(options)


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    """SuperResolution: x2 with the model of ``Type`` (default ``lq``)."""
    sr_type = _basic_type(options)
    target = Size(frame.width * 2, frame.height * 2)
    check_output_pixels(target, ctx)
    return upscale_to(frame, target, upscaler_for(sr_type, frame, ctx), ctx)


def apply_advanced(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    """AdvancedSuperResolution: upscale with ``Type`` (default ``standard``) to the size ``Mode`` gives."""
    sr_type = _advanced_type(options)
    target = target_size(frame.width, frame.height, options)
    check_output_side(target)
    check_output_pixels(target, ctx)
    return upscale_to(frame, target, upscaler_for(sr_type, frame, ctx), ctx)


BASIC_TYPES = ("lq", "hq")
ADVANCED_TYPES = ("standard", "super")
ADVANCED_ONLY_MEMBERS = {"Mode", "Percent", "Width", "Height", "LongSide", "ShortSide"}


def _basic_type(options: dict) -> str:
    sr_type = options.get("Type", "lq")
    if sr_type not in BASIC_TYPES:
        raise InvalidConfig(f"SuperResolution.Type must be lq or hq, not {sr_type!r}")
    size = options.get("Size", 2)
    if size != 2:
        raise InvalidConfig(f"SuperResolution.Size must be 2, not {size!r}")
    return sr_type


def _advanced_type(options: dict) -> str:
    sr_type = options.get("Type", "standard")
    if sr_type not in ADVANCED_TYPES:
        raise InvalidConfig(f"AdvancedSuperResolution.Type must be standard or super, not {sr_type!r}")
    return sr_type


# ---------------------------------------------------------------------------------------------
# Output size


def target_size(width: int, height: int, options: dict) -> Size:
    """The output size AdvancedSuperResolutionConfig asks for (see docs/engine-superres.md).

    - ``percent``: both sides times ``Percent`` (default 2.0, fractional allowed), rounded.
    - ``fixed``: exactly ``Width`` x ``Height`` (aspect ratio not kept).
    - ``aspect``: the aspect-preserving size that covers the ``Width`` x ``Height`` box (the larger
      of the two rectangles that fit the box's width or its height).
    ``fixed`` and ``aspect`` use ``LongSide`` x ``ShortSide`` (oriented like the input) when neither
    ``Width`` nor ``Height`` is given. With only one side given, the other keeps the aspect ratio.
    """
    mode = options.get("Mode", "percent")
    if mode == "percent":
        percent = float(options.get("Percent", DEFAULT_PERCENT))
        if not math.isfinite(percent) or percent <= 0:
            raise InvalidConfig(f"AdvancedSuperResolution.Percent must be above 0, not {percent!r}")
        return Size(max(1, round(width * percent)), max(1, round(height * percent)))
    if mode not in ("fixed", "aspect"):
        raise InvalidConfig(f"AdvancedSuperResolution.Mode must be percent, fixed or aspect, not {mode!r}")
    box_w, box_h = _requested_box(width, height, options)
    for name, value in (("width", box_w), ("height", box_h)):
        if value is not None and value <= 0:
            raise InvalidConfig(f"AdvancedSuperResolution target {name} must be above 0, not {value}")
    if box_w is None or box_h is None:  # one side given: the other follows the aspect ratio
        scale = box_w / width if box_w is not None else box_h / height
        return _scaled(width, height, scale)
    if mode == "fixed":
        return Size(box_w, box_h)
    return _scaled(width, height, max(box_w / width, box_h / height))


def _requested_box(width: int, height: int, options: dict) -> tuple[int | None, int | None]:
    box_w, box_h = options.get("Width"), options.get("Height")
    if box_w or box_h:
        return box_w or None, box_h or None
    long_side, short_side = options.get("LongSide") or None, options.get("ShortSide") or None
    if long_side is None and short_side is None:
        raise InvalidConfig(
            "AdvancedSuperResolution Mode fixed/aspect needs Width and/or Height, or LongSide and/or ShortSide"
        )
    return (long_side, short_side) if width >= height else (short_side, long_side)


def _scaled(width: int, height: int, scale: float) -> Size:
    return Size(max(1, round(width * scale)), max(1, round(height * scale)))


def check_output_side(target: Size) -> None:
    """AdvancedSuperResolution's documented cap of 4096 pixels per output side."""
    if target.width > MAX_SIDE or target.height > MAX_SIDE:
        raise LimitExceeded(
            f"advanced super-resolution output {target.width}x{target.height} exceeds {MAX_SIDE} pixels on a side"
        )


def check_output_pixels(target: Size, ctx: StepContext) -> None:
    """The configurable output limit (VODIMG_MAX_OUTPUT_PIXELS), before any pixel is made."""
    if target.width * target.height > ctx.max_output_pixels:
        raise LimitExceeded(
            f"super-resolution output {target.width}x{target.height} exceeds the limit of "
            f"{ctx.max_output_pixels} pixels"
        )


# ---------------------------------------------------------------------------------------------
# Upscaling


def denoise_levels(quality: int, sigma: float) -> tuple[int, ...]:
    """waifu2x photo denoise levels for a source of estimated JPEG ``quality`` (100: lossless)
    and noise estimate ``sigma`` (0-255 scale): the stronger of what each asks for."""
    by_quality = next(index for lowest, index in QUALITY_STRENGTH if quality >= lowest)
    by_noise = next(index for lowest, index in NOISE_STRENGTH if sigma >= lowest)
    return DENOISE_STRENGTHS[max(by_quality, by_noise)]


def upscaler_for(sr_type: str, frame: Frame, ctx: StepContext) -> Upscaler:
    """What ``sr_type`` runs on this source (docs/engine-superres.md, "Compressed sources").

    ``lq``: the mean of the waifu2x photo levels ``denoise_levels`` picks from the file's JPEG
    quality and the frame's noise estimate. ``hq`` and ``super`` on clean lossless sources: SPAN,
    by far the sharpest there, alone or averaged with waifu2x level 0. On JPEG or noisy sources,
    where SPAN falls below bicubic, both run ``lq``'s levels with a mirrored self-ensemble: at
    least ``lq``'s quality, at twice its cost. ``standard``: the learned filters, whatever the source.
    """
    if sr_type == "standard":
        return _filters_x2
    levels = denoise_levels(ctx.source_quality, estimate_sigma(frame.bgr))
    waifu2x = [ncnn_model.waifu2x_photo(level) for level in levels]
    if sr_type == "lq":
        return _models_x2(*waifu2x)
    if ctx.source_quality < codec.LOSSLESS_QUALITY or levels != DENOISE_STRENGTHS[0]:
        return _models_x2(*waifu2x, mirrored=True)
    if sr_type == "hq":
        return _models_x2(ncnn_model.SPAN_X2)
    return _models_x2(ncnn_model.SPAN_X2, ncnn_model.waifu2x_photo(0))


def _models_x2(*specs: ncnn_model.ModelSpec, mirrored: bool = False) -> Upscaler:
    """One model's x2, or the mean of several (their errors differ, so the mean beats each on the
    sources the other wins), averaged tile by tile; ``mirrored``: each also on the mirrored image."""

    def run(bgr: np.ndarray, progress: Callable[[float], None], check_deadline: Callable[[], None]) -> np.ndarray:
        models = [ncnn_model.load_model(spec) for spec in specs]
        return ncnn_model.run_tiled_mean(
            models, bgr, progress=progress, check_deadline=check_deadline, mirrored=mirrored
        )

    return run


def _filters_x2(bgr: np.ndarray, progress: Callable[[float], None], check_deadline: Callable[[], None]) -> np.ndarray:
    return filter_sr.upscale_x2(bgr, progress=progress, check_deadline=check_deadline)


def upscale_to(frame: Frame, target: Size, upscaler: Upscaler, ctx: StepContext) -> Frame:
    """Upscale ``frame`` to exactly ``target``: one x2 pass of ``upscaler`` then a plain resize.

    Factors at or below 1 skip the upscaler. Above 2 the x2 result is enlarged with Lanczos: a
    second model pass (4x, then area-downscaled) cost four times as much again and, measured at
    x4, won on bicubic-downscaled sources and lost by as much on box-downscaled ones.
    """
    factor = max(target.width / frame.width, target.height / frame.height)
    bgr = frame.bgr
    if factor > 1:
        # A side that shrinks is shrunk first, so the model's work and its x2 result stay
        # within twice the target's size whatever the input's shape.
        bgr = resize(bgr, Size(min(frame.width, target.width), min(frame.height, target.height)), cv2.INTER_AREA)
        bgr = upscaler(bgr, ctx.progress, ctx.check_deadline)
    ctx.check_deadline()
    out = resize(bgr, target, cv2.INTER_LANCZOS4)
    alpha = None if frame.alpha is None else resize(frame.alpha, target, cv2.INTER_CUBIC)
    ctx.progress(1.0)
    return Frame(bgr=np.ascontiguousarray(out), alpha=alpha)


def resize(image: np.ndarray, target: Size, enlarge: int) -> np.ndarray:
    """Plain resize to exactly ``target``: area when shrinking, the ``enlarge`` interpolation otherwise."""
    h, w = image.shape[:2]
    if (w, h) == (target.width, target.height):
        return image
    shrinking = target.width <= w and target.height <= h
    return cv2.resize(
        image, (target.width, target.height), interpolation=cv2.INTER_AREA if shrinking else enlarge
    )
