"""BeautyConfig: skin effects and colour-look filters, applied item by item in list order.

The spec leaves the Type names open; this engine offers the set below. Names match
case-insensitively, so Tencent MPS's capitalised names (``Smooth``, ``Whiten``, ``Sharpen``) work.

Effects (``BeautyEffectItems``), on the skin mask of ``vodimg.engine.skin`` unless noted:
- ``smooth``: skin smoothing: an edge-preserving (bilateral) blur at a working size of about
  800 px, blended into the skin areas (at most 85 %, so skin keeps some texture).
- ``whiten``: brightens skin with a log curve that lifts mid-tones most and keeps white at white.
- ``rosy``: a warm pink tint on skin (red up, green slightly down).
- ``sharpen``: the halo-limited luma sharpening of SharpEnhance, on the whole image.

Filters (``BeautyFilterItems``), colour looks on the whole image, each a 3x3 colour matrix and
per-channel tone curves built in code: ``natural`` (slight contrast and saturation), ``warm``,
``cool``, ``vivid`` (strong saturation and contrast), ``mono`` (black and white), ``vintage``
(faded blacks, warm cast, muted colour).

Each item: ``Switch`` (only items with ``ON`` apply), ``Type``, ``Value`` 0-100 (default 50;
0 changes nothing, 100 is the full effect), ``ResourcePath`` and ``ExtInfo`` (accepted, unused).
An unknown or missing Type raises ``InvalidConfig`` naming the item and the accepted names.
Effects run before filters, so skin is found on the original colours.
"""

from __future__ import annotations

import cv2
import numpy as np

from vodimg.engine import skin
from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import Frame, RowUpscaler, StepContext, map_strips, strips_of
from vodimg.engine.steps.sharpen import MAX_AMOUNT, sharpen

BEAUTY_EFFECT_TYPES = frozenset({"smooth", "whiten", "rosy", "sharpen"})
BEAUTY_FILTER_TYPES = frozenset({"natural", "warm", "cool", "vivid", "mono", "vintage"})
DEFAULT_VALUE = 50

SMOOTH_SIDE = 800  # smoothing works at this size, so its radius follows the image, not pixels
SMOOTH_MAX_BLEND = 0.85
WHITEN_MAX_STRENGTH = 4.0  # log-curve bend at Value 100
ROSY_MAX = (0.0, -0.03, 0.08)  # B, G, R relative gain at Value 100


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    effects = _items(options, "BeautyEffectItems", "effect", BEAUTY_EFFECT_TYPES)
    filters = _items(options, "BeautyFilterItems", "filter", BEAUTY_FILTER_TYPES)
    effects = [(kind, strength) for kind, strength in effects if strength > 0.0]
    # the skin mask is the input's, whatever the effects before a skin effect did
    mask = skin.skin_mask(frame.bgr) if any(kind in _SKIN_EFFECTS for kind, _ in effects) else None
    bgr, owned = frame.bgr, ctx.overwrite_input  # owned: each effect may write over ``bgr``
    for kind, strength in effects:
        if kind == "sharpen":  # as SharpEnhance (pipeline.ENHANCE_STEPS): 10 rows of context
            bgr = map_strips(bgr, lambda strip: sharpen(strip, MAX_AMOUNT * strength), halo=10, in_place=owned)
        else:
            bgr = _SKIN_EFFECTS[kind](bgr, mask, strength, in_place=owned)
        owned = True
        ctx.check_deadline()
    for kind, strength in filters:
        if strength > 0.0:
            bgr = apply_filter(bgr, kind, strength, in_place=owned)
            owned = True
    return frame if bgr is frame.bgr else Frame(bgr=bgr, alpha=frame.alpha)


def check(options: dict) -> None:
    """Raise InvalidConfig for an item whose Type this engine does not offer."""
    _items(options, "BeautyEffectItems", "effect", BEAUTY_EFFECT_TYPES)
    _items(options, "BeautyFilterItems", "filter", BEAUTY_FILTER_TYPES)


def _items(options: dict, member: str, noun: str, known: frozenset) -> list[tuple[str, float]]:
    """(type, strength 0..1) of the switched-on items, in order; every item's Type is checked."""
    chosen = []
    for index, item in enumerate(options.get(member) or []):
        name = str(item.get("Type") or "")
        kind = name.lower()
        if kind not in known:
            raise InvalidConfig(
                f"BeautyConfig.{member}.{index}.Type: unknown beauty {noun} {name!r}; "
                f"expected one of {', '.join(sorted(known))}"
            )
        if item.get("Switch") == "ON":
            value = item.get("Value", DEFAULT_VALUE)
            chosen.append((kind, min(max(float(DEFAULT_VALUE if value is None else value), 0.0), 100.0) / 100.0))
    return chosen


# ---- skin effects: each blends an adjusted image into the skin mask by ``strength``


def _blend(bgr: np.ndarray, adjusted, weight: np.ndarray, scale: float = 1.0, in_place: bool = False) -> np.ndarray:
    """bgr + weight * scale * (adjusted - bgr), weight float32 H x W in 0..1; ``adjusted(rows)``
    gives the adjusted image's rows from those rows of ``bgr`` alone (so ``in_place``, into
    ``bgr``, is safe). Strip by strip: full-size temporaries are never made."""
    out = bgr if in_place else np.empty_like(bgr)
    for _, rows, _ in strips_of(bgr):
        strip_weight = weight[rows] * scale if scale != 1.0 else weight[rows]
        out[rows] = cv2.blendLinear(bgr[rows], adjusted(rows), 1.0 - strip_weight, strip_weight)
    return out


def smooth(bgr: np.ndarray, mask: np.ndarray, strength: float, in_place: bool = False) -> np.ndarray:
    h, w = bgr.shape[:2]
    scale = min(1.0, SMOOTH_SIDE / max(h, w))
    work = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    # a wide colour range flattens freckles and pores; the skin mask keeps features out
    smoothed = cv2.bilateralFilter(work, -1, 25.0 + 45.0 * strength, 2.0 + 1.0 * strength)
    if scale == 1.0:
        return _blend(bgr, lambda rows: smoothed[rows], mask, SMOOTH_MAX_BLEND * strength, in_place)
    # only the change is scaled back up (full-resolution edges stay where they are), a strip at a
    # time: the full-size change is never held
    change = RowUpscaler(cv2.subtract(smoothed, work, dtype=cv2.CV_32F), w, h)
    return _blend(bgr, lambda rows: cv2.add(bgr[rows], change.rows(rows), dtype=cv2.CV_8U),
                  mask, SMOOTH_MAX_BLEND * strength, in_place)


def whiten(bgr: np.ndarray, mask: np.ndarray, strength: float, in_place: bool = False) -> np.ndarray:
    curve = _whiten_curve(strength)
    return _blend(bgr, lambda rows: cv2.LUT(bgr[rows], curve), mask, in_place=in_place)


def _whiten_curve(strength: float) -> np.ndarray:
    """y = log(1 + b x) / log(1 + b): lifts mid-tones, keeps 0 and 255."""
    bend = WHITEN_MAX_STRENGTH * strength
    x = np.arange(256, dtype=np.float64) / 255.0
    return np.rint(np.log1p(bend * x) / np.log1p(bend) * 255.0).astype(np.uint8)


def rosy(bgr: np.ndarray, mask: np.ndarray, strength: float, in_place: bool = False) -> np.ndarray:
    x = np.arange(256, dtype=np.float64)
    curves = [np.clip(np.rint(x * (1.0 + g * strength)), 0, 255) for g in ROSY_MAX]
    lut = np.stack(curves, axis=-1).astype(np.uint8).reshape(256, 1, 3)
    return _blend(bgr, lambda rows: cv2.LUT(bgr[rows], lut), mask, in_place=in_place)


_SKIN_EFFECTS = {"smooth": smooth, "whiten": whiten, "rosy": rosy}


# ---- filters: a 3x3 colour matrix (RGB order, rows sum to 1) and R, G, B tone curves

_LUMA = np.array([0.299, 0.587, 0.114])
_X = np.arange(256, dtype=np.float64) / 255.0


def _saturation_matrix(s: float) -> np.ndarray:
    return s * np.eye(3) + (1.0 - s) * np.tile(_LUMA, (3, 1))


def _contrast(amount: float, x: np.ndarray = _X) -> np.ndarray:
    """S-curve around mid-grey: blend of identity and smoothstep."""
    return (1.0 - amount) * x + amount * x * x * (3.0 - 2.0 * x)


def _gamma(g: float) -> np.ndarray:
    return _X**g


LOOKS = {  # name: (matrix, (R curve, G curve, B curve)), curves map 0..1 -> 0..1
    "natural": (_saturation_matrix(1.12), (_contrast(0.15),) * 3),
    "warm": (np.eye(3), (_gamma(0.88), _gamma(0.97), _gamma(1.15))),
    "cool": (np.eye(3), (_gamma(1.12), _gamma(1.0), _gamma(0.87))),
    "vivid": (_saturation_matrix(1.45), (_contrast(0.3),) * 3),
    "mono": (_saturation_matrix(0.0), (_contrast(0.2),) * 3),
    "vintage": (
        _saturation_matrix(0.65),
        (0.10 + 0.86 * _contrast(0.2), 0.07 + 0.85 * _contrast(0.2), 0.05 + 0.78 * _contrast(0.2)),
    ),
}


def apply_filter(bgr: np.ndarray, kind: str, strength: float, in_place: bool = False) -> np.ndarray:
    """The look ``kind`` at ``strength`` 0..1: matrix and curves both interpolated from identity."""
    matrix, curves = LOOKS[kind]
    matrix = np.eye(3) + strength * (matrix - np.eye(3))
    transform = None if np.allclose(matrix, np.eye(3)) else matrix[::-1, ::-1].astype(np.float32)  # BGR order
    lut = [_X + strength * (curve - _X) for curve in curves[::-1]]  # B, G, R
    lut = np.clip(np.rint(np.stack(lut, axis=-1) * 255.0), 0, 255).astype(np.uint8).reshape(256, 1, 3)

    def look(strip: np.ndarray) -> np.ndarray:  # per pixel: strips give the same result
        return cv2.LUT(strip if transform is None else cv2.transform(strip, transform), lut)

    return map_strips(bgr, look, halo=0, in_place=in_place)
