"""SharpEnhance: unsharp mask on luminance with a halo clamp.

Method: the luma Y is sharpened with an unsharp mask, ``Y + a * (Y - Gaussian(Y, sigma 1))``,
then clamped to the min and max of Y's 3x3 neighbourhood, so edges get steeper but no bright or
dark halo can overshoot what is already next to them. The change in Y is added equally to B, G
and R, which changes brightness only, not hue. All arithmetic is on uint8.

Options: ``Intensity`` 0.0-1.0 (default 0.0), a = 2.5 * Intensity. Intensity 0 returns the image
unchanged, bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from vodimg.engine.frame import Frame, StepContext

DEFAULT_INTENSITY = 0.0
MAX_AMOUNT = 2.5  # unsharp-mask amount at Intensity 1.0
SIGMA = 1.0
_NEIGHBOURHOOD = np.ones((3, 3), np.uint8)


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    intensity = float(options.get("Intensity", DEFAULT_INTENSITY) or 0.0)
    if intensity <= 0.0:
        return frame
    return Frame(bgr=sharpen(frame.bgr, MAX_AMOUNT * min(intensity, 1.0)), alpha=frame.alpha)


def sharpen(bgr: np.ndarray, amount: float, sigma: float = SIGMA) -> np.ndarray:
    """Halo-clamped unsharp mask of strength ``amount`` applied to the luma of ``bgr``."""
    luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    sharpened = sharpen_luma(luma, amount, sigma)
    # the signed change as two saturating uint8 parts (only one is non-zero at a pixel)
    brighter = cv2.cvtColor(cv2.subtract(sharpened, luma), cv2.COLOR_GRAY2BGR)
    darker = cv2.cvtColor(cv2.subtract(luma, sharpened), cv2.COLOR_GRAY2BGR)
    return cv2.subtract(cv2.add(bgr, brighter), darker)


def sharpen_luma(luma: np.ndarray, amount: float, sigma: float = SIGMA) -> np.ndarray:
    """Unsharp mask of one uint8 channel, clamped to each pixel's 3x3 neighbourhood range."""
    blurred = cv2.GaussianBlur(luma, (5, 5), sigma)
    # saturating to uint8 is harmless: the result is clamped into [0, 255] neighbourhood bounds
    sharpened = cv2.addWeighted(luma, 1.0 + amount, blurred, -amount, 0.0)
    sharpened = cv2.min(sharpened, cv2.dilate(luma, _NEIGHBOURHOOD))
    return cv2.max(sharpened, cv2.erode(luma, _NEIGHBOURHOOD))
