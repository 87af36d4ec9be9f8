"""ColorEnhance: vibrance-style saturation boost that protects skin and never clips.

Method: in HSV (OpenCV's 8-bit HSV, hue in 2-degree units) only saturation S changes,
through the curve ``S' = 1 - (1 - S) ** (1 + a)``. Its slope is 1 + a at S = 0 and 0 at S = 1, so
dull pixels gain the most (vibrance; near-greys below S = 0.02-0.10 are faded out, so chroma
noise is not amplified), and already vivid ones approach the gamut edge softly
instead of clipping; V (the brightest channel) is kept, so no channel ever rises, and S is capped
where the lowest channel would round to 0. Pixels in the
skin hue band (about 0-50 degrees) with moderate saturation get a third of the boost, so faces do
not turn orange while orange objects (saturated) still get the full one. Everything runs on uint8
lookup tables.

Options: ``Type`` ``weak`` | ``normal`` | ``strong`` (default ``weak``), a = 0.25 / 0.5 / 0.9.
"""

from __future__ import annotations

import cv2
import numpy as np

from vodimg.engine.steps import chosen_type
from vodimg.engine.frame import Frame, StepContext

DEFAULT_TYPE = "weak"
BOOST = {"weak": 0.25, "normal": 0.5, "strong": 0.9}
SKIN_SHARE = 1.0 / 3.0  # share of the boost skin-coloured pixels receive
SKIN_HUE_DEGREES = (0.0, 50.0)  # protected band, feathered by SKIN_HUE_FEATHER on each side
SKIN_HUE_FEATHER = 12.0
SKIN_MAX_SATURATION = (0.60, 0.80)  # protection fades out across this saturation range
NEUTRAL_S = (0.02, 0.10)  # below this saturation range pixels count as grey and are not boosted


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    boost = BOOST[chosen_type(options, "ColorEnhance", BOOST, DEFAULT_TYPE)]
    return Frame(bgr=boost_saturation(frame.bgr, boost), alpha=frame.alpha)


def boost_saturation(bgr: np.ndarray, boost: float, skin_share: float = SKIN_SHARE) -> np.ndarray:
    """Vibrance boost of strength ``boost`` (0 = none), skin hues getting ``skin_share`` of it."""
    # extractChannel: cv2.split is several times slower in OpenCV 5; the 0-180 hue variant
    # because the full-range HSV2BGR_FULL conversion is 3-5x slower than HSV2BGR
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h, s, v = (cv2.extractChannel(hsv, i) for i in range(3))
    full, skin = saturation_curve(boost), saturation_curve(boost * skin_share)
    # boost withheld from a fully skin-like pixel, by S (its saturation weight folded in)
    withheld = np.rint((full.astype(np.float64) - skin) * _SKIN_SAT_WEIGHT / 255.0).astype(np.uint8)
    held_back = cv2.multiply(cv2.LUT(h, _SKIN_HUE_WEIGHT), cv2.LUT(s, withheld), scale=1.0 / 255.0)
    # the lowest channel is V * (1 - S): keep it >= 1 after rounding, so dark colours don't clip
    # to 0; pixels already at the gamut edge (S = 255) stay there
    s_cap = cv2.max(cv2.LUT(v, _S_CAP_BY_V), cv2.threshold(s, 254, 255, cv2.THRESH_BINARY)[1])
    s_new = cv2.min(cv2.subtract(cv2.LUT(s, full), held_back), s_cap)
    return cv2.cvtColor(cv2.merge([h, s_new, v]), cv2.COLOR_HSV2BGR)


def saturation_curve(boost: float) -> np.ndarray:
    """uint8 LUT of S' = 1 - (1 - S) ** (1 + boost), faded in over S = 0.02-0.10 so that
    near-neutral pixels (greys with chroma noise or compression artefacts) are left alone."""
    s = np.arange(256, dtype=np.float64) / 255.0
    boosted = 1.0 - (1.0 - s) ** (1.0 + boost)
    return np.rint((s + _ramp(s, *NEUTRAL_S) * (boosted - s)) * 255.0).astype(np.uint8)


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _skin_hue_weight() -> np.ndarray:
    """255 inside the skin hue band, 0 outside, smooth edges; hue wraps at 360 degrees."""
    degrees = np.arange(256, dtype=np.float64) * 2.0  # OpenCV's 8-bit hue unit is 2 degrees
    signed = np.where(degrees > 180.0, degrees - 360.0, degrees)  # reds near 360 are near 0
    lo, hi = SKIN_HUE_DEGREES
    weight = _ramp(signed, lo - SKIN_HUE_FEATHER, lo) * (1.0 - _ramp(signed, hi, hi + SKIN_HUE_FEATHER))
    return np.rint(weight * 255.0).astype(np.uint8)


def _skin_saturation_weight() -> np.ndarray:
    s = np.arange(256, dtype=np.float64) / 255.0
    lo, hi = SKIN_MAX_SATURATION
    return np.rint((1.0 - _ramp(s, lo, hi)) * 255.0).astype(np.uint8)


def _saturation_cap_by_value() -> np.ndarray:
    """Largest S whose lowest channel V * (1 - S / 255) stays >= 1.5 (so that it still rounds to
    at least 1 through OpenCV's 8-bit HSV-to-BGR conversion)."""
    v = np.maximum(np.arange(256, dtype=np.float64), 1.0)
    return np.clip(np.floor(255.0 * (1.0 - 1.5 / v)), 0, 255).astype(np.uint8)


_S_CAP_BY_V = _saturation_cap_by_value()
_SKIN_HUE_WEIGHT = _skin_hue_weight()
_SKIN_SAT_WEIGHT = _skin_saturation_weight()
