"""LowLightEnhance: exposure-adaptive illumination-map lift (LIME-style) that keeps blacks neutral.

Method: the illumination T of a pixel is estimated as the max of its R, G, B (the brightest a
surface can be under that light), taken on a copy downscaled to about 256 px and smoothed with a
self-guided filter, so that the map follows object edges but not texture.

The strength adapts to the exposure: the photo's key K is the median of that (unsmoothed) map,
and the tone curve T ** gamma is chosen to bring K to KEY_TARGET (gamma = log(KEY_TARGET) /
log(K), at least GAMMA_MIN). A well-exposed photo (K >= KEY_TARGET) gets gamma 1: it is returned
unchanged, its black areas (a black collar, a night sky) are not "low light". The gain curve
g(T) = T ** gamma / T fades to exactly 1 above T = 0.7, so bright regions are untouched, and is
also capped by g of the pixel's own brightest channel, so a bright detail in a dark neighbourhood
is lifted no more than the global curve would lift it; since t * g(t) <= 1 nothing can clip.

Colour: the luma Y of every pixel is multiplied by g. Its colour part (B, G, R minus Y) is
multiplied by g too when the pixel is clearly coloured, but kept as it is when it is near-neutral
(its channels within a few levels of each other): in a dark region those few levels are noise or
a colour cast, and multiplying them by up to 6 is what turned black cloth brown. Between the two,
a smooth blend over CHROMA_KEEP..CHROMA_LIFT levels of (max - min channel).

Options: ``Type`` ``normal`` (the only type; default ``normal``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from vodimg.engine.steps import chosen_type
from vodimg.engine.frame import Frame, RowUpscaler, StepContext, strips_of

MAP_SIDE = 256  # the illumination map is estimated at this size (longer side)
GUIDED_RADIUS = 6  # in map pixels
GUIDED_EPS = 0.02  # edge threshold of the guided filter, in (0..1 intensity) squared
KEY_TARGET = 0.45  # median brightest-channel level a lifted photo is brought to (0..1)
GAMMA_MIN = 0.4  # strongest tone curve, for very dark photos
MAX_GAIN = 6.0  # bounds noise amplification in near-black regions
FADE_LO, FADE_HI = 0.30, 0.70  # illumination band where the lift fades out to gain 1
NO_OP_GAIN = 1.02  # below this largest gain the image counts as already bright
CHROMA_KEEP, CHROMA_LIFT = 3, 12  # (max - min channel) levels: colour kept as is / lifted with Y


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    chosen_type(options, "LowLightEnhance", ("normal",), "normal")
    peak = brightest_channel(frame.bgr)  # the illumination bound per pixel
    lifted = illumination_gain(peak)
    if lifted is None:
        return frame
    gain_map, curve = lifted

    def lift(rows: slice) -> np.ndarray:  # per pixel: strip by strip, no full-size float maps
        bgr = frame.bgr[rows]
        gain = cv2.min(gain_map.rows(rows), cv2.LUT(peak[rows], curve))
        b, g, r = (cv2.extractChannel(bgr, i) for i in range(3))
        return _lift(bgr, gain, _colour_gain(gain, cv2.subtract(peak[rows], cv2.min(cv2.min(b, g), r))))

    out = np.empty_like(frame.bgr)
    for _, rows, _ in strips_of(frame.bgr):
        out[rows] = lift(rows)
    return Frame(bgr=out, alpha=frame.alpha)


def brightest_channel(bgr: np.ndarray) -> np.ndarray:
    peak = np.empty(bgr.shape[:2], np.uint8)
    for _, rows, _ in strips_of(bgr):
        b, g, r = (cv2.extractChannel(bgr[rows], i) for i in range(3))  # cv2.split is slower in OpenCV 5
        peak[rows] = cv2.max(cv2.max(b, g), r)
    return peak


def tone_gamma(key: float) -> float:
    """The tone-curve exponent that brings the key ``key`` (0..1) to KEY_TARGET (1: no lift)."""
    if key >= KEY_TARGET:
        return 1.0
    return max(GAMMA_MIN, math.log(KEY_TARGET) / math.log(max(key, 1.0 / 255.0)))


def gain_curve(gamma: float) -> np.ndarray:
    """g(T) for T = 0..255 / 255: T ** gamma / T, faded to 1 across [FADE_LO, FADE_HI]."""
    t = np.maximum(np.arange(256, dtype=np.float32) / 255.0, 1.0 / 255.0)
    lifted = np.minimum(t ** (gamma - 1.0), MAX_GAIN)
    x = np.clip((t - FADE_LO) / (FADE_HI - FADE_LO), 0.0, 1.0)
    fade = x * x * (3.0 - 2.0 * x)  # smoothstep
    return (lifted * (1.0 - fade) + fade).astype(np.float32)


def _chroma_weight() -> np.ndarray:
    """0 for (max - min channel) <= CHROMA_KEEP, 1 from CHROMA_LIFT, smoothstep between."""
    x = np.clip((np.arange(256, dtype=np.float32) - CHROMA_KEEP) / (CHROMA_LIFT - CHROMA_KEEP), 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


CHROMA_WEIGHT = _chroma_weight()


def illumination_gain(peak: np.ndarray) -> tuple[RowUpscaler, np.ndarray] | None:
    """Gain g(T) per pixel (float32, enlarged a strip at a time: ``rows(slice)``) from the
    brightest-channel image ``peak`` (uint8) and the curve g used (a 256-entry LUT), or None when
    the image is already bright enough."""
    h, w = peak.shape
    scale = min(1.0, MAP_SIDE / max(h, w))
    small = cv2.resize(peak, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    curve = gain_curve(tone_gamma(float(np.median(small)) / 255.0))
    t = _self_guided_filter(small.astype(np.float32) * (1.0 / 255.0), GUIDED_RADIUS, GUIDED_EPS)
    t8 = np.clip(t * 255.0 + 0.5, 0, 255).astype(np.uint8)
    gain_small = cv2.LUT(t8, curve)
    if float(gain_small.max()) < NO_OP_GAIN:
        return None
    return RowUpscaler(gain_small, w, h), curve


def _colour_gain(gain: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Gain of the colour part: 1 for near-neutral pixels, ``gain`` for clearly coloured ones."""
    weight = cv2.LUT(spread, CHROMA_WEIGHT)
    return cv2.add(cv2.multiply(cv2.subtract(gain, 1.0), weight), 1.0)


def _lift(bgr: np.ndarray, gain: np.ndarray, colour_gain: np.ndarray) -> np.ndarray:
    """Luma times ``gain`` and colour part (I - Y) times ``colour_gain``, written as
    colour_gain * I + (gain - colour_gain) * Y per channel, in 8-bit: the second term is the same
    on B, G and R, so its rounding adds no colour. With colour_gain <= gain the brightest channel
    stays at most gain * peak (no clipping) and the lowest at least 0."""
    scaled = cv2.multiply(bgr, cv2.merge([colour_gain] * 3), dtype=cv2.CV_8U)
    luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    neutral = cv2.multiply(luma, cv2.subtract(gain, colour_gain), dtype=cv2.CV_8U)
    return cv2.add(scaled, cv2.merge([neutral] * 3))


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
