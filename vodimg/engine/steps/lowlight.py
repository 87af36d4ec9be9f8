"""LowLightEnhance: illumination-map estimation (LIME-style) with protected highlights.

Method: the illumination T of a pixel is estimated as the max of its R, G, B (the brightest a
surface can be under that light), taken on a copy downscaled to about 256 px and smoothed with a
self-guided filter, so that the map follows object edges but not texture. The output is I * g(T):
the gain curve g lifts dark illumination towards a gamma curve (T ** 0.4) and fades to exactly 1
above T = 0.7, so bright regions are untouched. Every channel of a pixel gets the same gain, so
hue and saturation ratios are kept. The gain is also capped by g of the pixel's own brightest
channel, so a bright detail in a dark neighbourhood is lifted no more than the global curve would
lift it, and since t * g(t) <= 1 no channel can clip. An already-bright image gets gains of about 1
and is returned unchanged.

Options: ``Type`` ``normal`` (the only type; default ``normal``).
"""

from __future__ import annotations

import cv2
import numpy as np

from vodimg.engine.steps import chosen_type
from vodimg.engine.frame import Frame, RowUpscaler, StepContext, strips_of

MAP_SIDE = 256  # the illumination map is estimated at this size (longer side)
GUIDED_RADIUS = 6  # in map pixels
GUIDED_EPS = 0.02  # edge threshold of the guided filter, in (0..1 intensity) squared
GAMMA = 0.4  # target tone curve for fully dark illumination
MAX_GAIN = 6.0  # bounds noise amplification in near-black regions
FADE_LO, FADE_HI = 0.30, 0.70  # illumination band where the lift fades out to gain 1
NO_OP_GAIN = 1.02  # below this largest gain the image counts as already bright


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    chosen_type(options, "LowLightEnhance", ("normal",), "normal")
    peak = brightest_channel(frame.bgr)  # the illumination bound per pixel
    gain = illumination_gain(peak)
    if gain is None:
        return frame
    out = np.empty_like(frame.bgr)
    for _, rows, _ in strips_of(frame.bgr):  # full-size float maps only a strip at a time
        strip_gain = cv2.min(gain.rows(rows), cv2.LUT(peak[rows], GAIN_LUT))
        out[rows] = cv2.multiply(frame.bgr[rows], cv2.merge([strip_gain] * 3), dtype=cv2.CV_8U)
    return Frame(bgr=out, alpha=frame.alpha)


def brightest_channel(bgr: np.ndarray) -> np.ndarray:
    peak = np.empty(bgr.shape[:2], np.uint8)
    for _, rows, _ in strips_of(bgr):
        b, g, r = (cv2.extractChannel(bgr[rows], i) for i in range(3))  # cv2.split is slower in OpenCV 5
        peak[rows] = cv2.max(cv2.max(b, g), r)
    return peak


def _gain_curve() -> np.ndarray:
    """g(T) for T = 0..255 / 255: T ** GAMMA / T, faded to 1 across [FADE_LO, FADE_HI]."""
    t = np.maximum(np.arange(256, dtype=np.float32) / 255.0, 1.0 / 255.0)
    lifted = np.minimum(t ** (GAMMA - 1.0), MAX_GAIN)
    x = np.clip((t - FADE_LO) / (FADE_HI - FADE_LO), 0.0, 1.0)
    fade = x * x * (3.0 - 2.0 * x)  # smoothstep
    return (lifted * (1.0 - fade) + fade).astype(np.float32)


GAIN_LUT = _gain_curve()


def illumination_gain(peak: np.ndarray) -> RowUpscaler | None:
    """Gain g(T) per pixel (float32, upscaled a strip at a time) from the brightest-channel image
    ``peak`` (uint8), or None when the image is already bright."""
    h, w = peak.shape
    scale = min(1.0, MAP_SIDE / max(h, w))
    small = cv2.resize(peak, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    t = _self_guided_filter(small.astype(np.float32) * (1.0 / 255.0), GUIDED_RADIUS, GUIDED_EPS)
    t8 = np.clip(t * 255.0 + 0.5, 0, 255).astype(np.uint8)
    gain_small = cv2.LUT(t8, GAIN_LUT)
    if float(gain_small.max()) < NO_OP_GAIN:
        return None
    return RowUpscaler(gain_small, w, h)


def _self_guided_filter(p: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with the image as its own guide (edge-preserving smoothing)."""
    ksize = (2 * radius + 1, 2 * radius + 1)
    mean = cv2.boxFilter(p, -1, ksize, borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.boxFilter(p * p, -1, ksize, borderType=cv2.BORDER_REFLECT)
    var = mean_sq - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    a = cv2.boxFilter(a, -1, ksize, borderType=cv2.BORDER_REFLECT)
    b = cv2.boxFilter(b, -1, ksize, borderType=cv2.BORDER_REFLECT)
    return a * p + b
