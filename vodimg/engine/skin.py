"""Soft skin mask for the beauty effects: where skin smoothing, whitening and rosy tint apply.

Skin is found by colour in YCrCb (skin tones of all ethnicities cluster tightly in Cr/Cb while
Y varies with lighting). When faces are detected (``vodimg.engine.faces``, used if present), the
colour model is centred on the chroma sampled from the faces themselves, which follows the
person's skin tone and the light's colour. Skin-coloured areas far from every face (wood, sand,
walls) are attenuated to AWAY_FROM_FACE; so is everything when no face is found, where the fixed
range Cr 138-173, Cb 77-122 (the classic skin box without its near-neutral end) is used.

The mask is computed on a copy at most ``MASK_SIDE`` px long, cleaned of specks, feathered and
scaled back: float32, H x W, 0.0 (not skin) to 1.0 (skin).
"""

from __future__ import annotations

import cv2
import numpy as np

MASK_SIDE = 512
CR_RANGE, CB_RANGE = (138.0, 173.0), (77.0, 122.0)  # fixed skin box (no face found)
BOX_FEATHER = 5.0  # chroma levels over which the fixed box fades out
FACE_CHROMA_RADIUS = (6.0, 14.0)  # full weight inside, zero beyond, around the faces' skin chroma
MIN_LUMA = (30.0, 55.0)  # very dark pixels are shadow or hair, not skin
AWAY_FROM_FACE = 0.3  # weight of skin-coloured pixels far from every detected face


def skin_mask(bgr: np.ndarray, faces: list | None = None) -> np.ndarray:
    """Soft skin mask (float32, H x W, 0..1). ``faces``: boxes with x, y, w, h in ``bgr`` pixels,
    or None to detect them here (on the mask-size copy, which finds faces down to about 2.5 % of
    the image's longer side) when the face detector is installed."""
    h, w = bgr.shape[:2]
    scale = min(1.0, MASK_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else bgr
    if faces is None:
        boxes = [_scaled_box(face, 1.0) for face in _detect_faces(small)]
    else:
        boxes = [_scaled_box(face, scale) for face in faces]
    y, cr, cb = [c.astype(np.float32) for c in cv2.split(cv2.cvtColor(small, cv2.COLOR_BGR2YCrCb))]
    centre = _face_chroma(cr, cb, boxes)
    weight = _chroma_weight(cr, cb, centre) * _ramp(y, *MIN_LUMA) * _near_faces(y.shape, boxes)
    weight = cv2.morphologyEx(weight, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    sigma = max(1.0, 0.006 * max(size))
    weight = cv2.GaussianBlur(weight, (0, 0), sigma)
    if scale < 1.0:
        weight = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(weight, 0.0, 1.0, out=weight)


def _detect_faces(bgr: np.ndarray) -> list:
    try:
        from vodimg.engine.faces import detect_faces
    except ImportError:  # the face detector is optional for skin masks
        return []
    return list(detect_faces(bgr))


def _scaled_box(face, scale: float) -> tuple[float, float, float, float]:
    return (face.x * scale, face.y * scale, face.w * scale, face.h * scale)


def _face_chroma(cr: np.ndarray, cb: np.ndarray, boxes: list) -> tuple[float, float] | None:
    """Median (Cr, Cb) of the cheeks-and-nose area of the faces, or None without faces."""
    samples_cr, samples_cb = [], []
    for x, y, w, h in boxes:
        x0, x1 = int(x + 0.25 * w), int(x + 0.75 * w)
        y0, y1 = int(y + 0.35 * h), int(y + 0.70 * h)  # below the eyes, above the mouth
        samples_cr.append(cr[y0:y1, x0:x1].ravel())
        samples_cb.append(cb[y0:y1, x0:x1].ravel())
    samples = np.concatenate(samples_cr) if samples_cr else np.empty(0)
    if samples.size < 16:
        return None
    return float(np.median(samples)), float(np.median(np.concatenate(samples_cb)))


def _chroma_weight(cr: np.ndarray, cb: np.ndarray, centre: tuple[float, float] | None) -> np.ndarray:
    if centre is None:
        return _band(cr, *CR_RANGE) * _band(cb, *CB_RANGE)
    distance = cv2.magnitude(cr - centre[0], cb - centre[1])
    inner, outer = FACE_CHROMA_RADIUS
    return 1.0 - _ramp(distance, inner, outer)


def _near_faces(shape: tuple[int, int], boxes: list) -> np.ndarray:
    """1.0 over each face and the neck below it, AWAY_FROM_FACE elsewhere (everywhere when no
    face was found), feathered."""
    near = np.zeros(shape, np.float32)
    for x, y, w, h in boxes:
        centre = (int(x + w / 2), int(y + 0.75 * h))  # lowered: covers forehead to neck
        axes = (max(1, int(0.85 * w)), max(1, int(1.25 * h)))
        cv2.ellipse(near, centre, axes, 0.0, 0.0, 360.0, 1.0, thickness=-1)
    near = cv2.GaussianBlur(near, (0, 0), max(1.0, 0.02 * max(shape)))
    return AWAY_FROM_FACE + (1.0 - AWAY_FROM_FACE) * near


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below lo, 1 above hi, linear between."""
    return np.clip((x - lo) * (1.0 / (hi - lo)), 0.0, 1.0)


def _band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """1 inside [lo, hi], fading to 0 over BOX_FEATHER outside."""
    return _ramp(x, lo - BOX_FEATHER, lo) * (1.0 - _ramp(x, hi, hi + BOX_FEATHER))
