"""SharpEnhance: two-band unsharp mask on luminance with compressed edges and a soft halo limit.

Method, on the luma Y:
- detail from two bands, fine (Y - Gaussian(Y, sigma 1)) plus 0.375 x medium (Gaussian sigma 1
  - Gaussian sigma 3), passed through a soft knee d / (1 + |d| / 16 levels): texture (a few
  levels) gets the full boost, strong edges much less of it, so edges get crisper without a rim;
- Y + a * detail, then limited softly to the min and max of Y's 3x3
  neighbourhood: whatever would leave that range is compressed to at most 2 levels beyond it
  (e / (1 + |e| / 2)). A hard clamp there (the previous method) pinned texture to its local
  extremes at high amounts, giving hair and skin a flat, painted look; the soft limit keeps the
  order of neighbouring values, so texture keeps its gradation.
The change in Y is added equally to B, G and R, which changes brightness only, not hue.

Options: ``Intensity`` 0.0-1.0 (default 0.0), a = 2 * Intensity ** 0.75 (the power makes low
Intensities visible: 0.25 gives a = 0.71). Intensity 0 returns the image unchanged, bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from vodimg.engine.frame import Frame, StepContext

DEFAULT_INTENSITY = 0.0
MAX_AMOUNT = 2.0  # fine-band amount at Intensity 1.0
INTENSITY_POWER = 0.75  # amount = MAX_AMOUNT * Intensity ** INTENSITY_POWER
SIGMA = 1.0  # fine band; the medium band is MEDIUM_SCALE times wider
MEDIUM_SCALE = 3.0
MEDIUM_SHARE = 0.375  # medium-band amount per unit of fine-band amount
DETAIL_KNEE = 16.0  # levels: band detail well above this (edges) is boosted less
OVERSHOOT_KNEE = 2.0  # levels: the most the result may leave the input's 3x3 range
_NEIGHBOURHOOD = np.ones((3, 3), np.uint8)


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    intensity = float(options.get("Intensity", DEFAULT_INTENSITY) or 0.0)
    if intensity <= 0.0:
        return frame
    return Frame(bgr=sharpen(frame.bgr, amount_for(intensity)), alpha=frame.alpha)


def amount_for(intensity: float) -> float:
    """The fine-band amount ``a`` of an Intensity (0..1)."""
    return MAX_AMOUNT * min(intensity, 1.0) ** INTENSITY_POWER


def sharpen(bgr: np.ndarray, amount: float, sigma: float = SIGMA) -> np.ndarray:
    """The sharpening of ``sharpen_luma`` with strength ``amount`` applied to the luma of ``bgr``."""
    luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    sharpened = sharpen_luma(luma, amount, sigma)
    # the signed change as two saturating uint8 parts (only one is non-zero at a pixel)
    brighter = cv2.cvtColor(cv2.subtract(sharpened, luma), cv2.COLOR_GRAY2BGR)
    darker = cv2.cvtColor(cv2.subtract(luma, sharpened), cv2.COLOR_GRAY2BGR)
    return cv2.subtract(cv2.add(bgr, brighter), darker)


def sharpen_luma(luma: np.ndarray, amount: float, sigma: float = SIGMA) -> np.ndarray:
    """Two-band unsharp mask of one uint8 channel, kept within 2 levels of each pixel's 3x3
    neighbourhood range by a soft limit."""
    fine = cv2.GaussianBlur(luma, (0, 0), sigma)
    medium = cv2.GaussianBlur(luma, (0, 0), sigma * MEDIUM_SCALE)
    y = luma.astype(np.float32)
    # (y - fine) + MEDIUM_SHARE * (fine - medium)
    detail = cv2.add(cv2.addWeighted(fine, MEDIUM_SHARE - 1.0, medium, -MEDIUM_SHARE, 0.0, dtype=cv2.CV_32F), y)
    detail = cv2.divide(detail, cv2.add(cv2.multiply(cv2.absdiff(detail, 0.0), 1.0 / DETAIL_KNEE), 1.0))
    result = cv2.add(cv2.scaleAdd(detail, amount, y), 0.0, dtype=cv2.CV_8U)  # rounded, saturated
    low, high = cv2.erode(luma, _NEIGHBOURHOOD), cv2.dilate(luma, _NEIGHBOURHOOD)
    above, below = cv2.subtract(result, high), cv2.subtract(low, result)  # what leaves the range
    inside = cv2.min(cv2.max(result, low), high)
    return cv2.subtract(cv2.add(inside, cv2.LUT(above, _OVERSHOOT_LUT)), cv2.LUT(below, _OVERSHOOT_LUT))


def _overshoot_lut() -> np.ndarray:
    """e / (1 + e / OVERSHOOT_KNEE) for e = 0..255 levels, rounded: what is left of an excess."""
    excess = np.arange(256, dtype=np.float64)
    return np.rint(excess / (1.0 + excess / OVERSHOOT_KNEE)).astype(np.uint8)


_OVERSHOOT_LUT = _overshoot_lut()
