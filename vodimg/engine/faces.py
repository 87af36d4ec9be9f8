"""Face detection shared by face enhance and beauty: YuNet (libfacedetection) via ``yuface``.

``detect_faces(bgr)`` returns the faces found, most confident first. Detection runs on a copy
downscaled so that its longer side is at most ``max_side`` (default ``DETECT_MAX_SIDE``, the
detector's own limit for good results, 960 px) and boxes are scaled back to the input's pixel
grid. The detector finds faces reliably from about 20 px wide at the detection scale (some from
12 px), so the smallest face found is about ``20 / max_side`` of the image's longer side: 40 px
on a 1920 px photo at 960, 64 px at 640.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from dataclasses import dataclass

import cv2
import numpy as np
import yuface

DETECT_MAX_SIDE = 960
MIN_SCORE = 0.6  # YuNet's scores on real faces are 0.85-0.99; below 0.6 false positives dominate
MIN_SIDE = 16  # smaller images hold no face the detector can find


@dataclass(frozen=True)
class FaceBox:
    """A detected face in input-pixel coordinates, clipped to the image.

    ``landmarks`` are five (x, y) points: right eye, left eye, nose tip, right and left mouth
    corners (right/left as seen in the image: the first eye has the smaller x on a frontal face).
    """

    x: int
    y: int
    w: int
    h: int
    score: float  # 0.0-1.0
    landmarks: tuple[tuple[int, int], ...]

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)


def detect_faces(bgr: np.ndarray, min_score: float = MIN_SCORE, max_side: int = DETECT_MAX_SIDE) -> list[FaceBox]:
    """Faces in a uint8 BGR image, most confident first (ties broken by position); detected on a
    copy whose longer side is at most ``max_side`` (smaller: faster, but small faces are missed)."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError("detect_faces expects a uint8 BGR image of shape (H, W, 3)")
    height, width = bgr.shape[:2]
    if min(height, width) < MIN_SIDE:
        return []
    scale = min(1.0, max_side / max(height, width))
    small = bgr if scale == 1.0 else cv2.resize(
        bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    _openmp_single_thread()
    rows = yuface.c_detect(np.ascontiguousarray(small))  # int16: score%, x, y, w, h, 10 landmark coords
    faces = [_face_from_row(row, 1.0 / scale, width, height) for row in rows if row[0] >= min_score * 100]
    faces = [face for face in faces if face.w > 0 and face.h > 0]
    return sorted(faces, key=lambda f: (-f.score, f.y, f.x))


@functools.cache
def _yuface_openmp():
    """The OpenMP runtime bundled in the yuface wheel (a private copy, used by nothing else)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(yuface.__file__)), "yuface.libs")
    paths = sorted(glob.glob(os.path.join(libs, "libgomp*")))
    return ctypes.CDLL(paths[0]) if paths else None


def _openmp_single_thread() -> None:
    """Run the detector on one thread: on 2 shared cores its OpenMP threads spin against each
    other and other work (512 px: 34 ms on one thread, 60-170 ms on two). The setting is the
    calling thread's own and only touches yuface's private OpenMP copy."""
    runtime = _yuface_openmp()
    if runtime is not None:
        runtime.omp_set_num_threads(1)


def _face_from_row(row: np.ndarray, inverse_scale: float, width: int, height: int) -> FaceBox:
    x0, y0, w, h = (float(v) * inverse_scale for v in row[1:5])
    x1, y1 = min(width, x0 + w), min(height, y0 + h)
    x0, y0 = max(0.0, x0), max(0.0, y0)
    points = row[5:15].astype(np.float64).reshape(5, 2) * inverse_scale
    landmarks = tuple(
        (int(np.clip(round(px), 0, width - 1)), int(np.clip(round(py), 0, height - 1))) for px, py in points
    )
    return FaceBox(
        x=int(round(x0)),
        y=int(round(y0)),
        w=int(round(x1 - x0)),
        h=int(round(y1 - y0)),
        score=float(row[0]) / 100.0,
        landmarks=landmarks,
    )
