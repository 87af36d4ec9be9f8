"""The in-memory image that flows through the pipeline steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import cv2
import numpy as np

from vodimg.engine.errors import ProcessingTimeout

# Full-resolution passes that run in strips use strips of about STRIP_PIXELS pixels (at most
# STRIP_ROWS rows, at least MIN_STRIP_ROWS): memory bounded by one strip's temporaries (a float32
# BGR strip is 3 MB) instead of the whole image's, for a few hundred Python calls on 50 MP.
STRIP_ROWS = 512
STRIP_PIXELS = 256 * 1024
MIN_STRIP_ROWS = 16


@dataclass
class Frame:
    """An image between steps.

    ``bgr`` is uint8, shape (H, W, 3), OpenCV channel order, sRGB, C-contiguous.
    ``alpha`` is None (opaque) or uint8, shape (H, W). A step that changes the size must
    resize ``alpha`` with it; steps other than cut-out leave alpha's values alone.
    """

    bgr: np.ndarray
    alpha: Optional[np.ndarray] = None

    @property
    def width(self) -> int:
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgr.shape[0])


@dataclass
class StepContext:
    """What a step may use besides its own options: progress reports and the deadline.

    ``progress(fraction)`` reports 0.0-1.0 within the current step; long steps (super-resolution
    tiles, learned models) call it and ``check_deadline()`` between units of work.
    """

    deadline: float = float("inf")  # time.monotonic() value
    progress: Callable[[float], None] = field(default=lambda fraction: None)
    max_output_pixels: int = 4096 * 4096
    # The source file's JPEG quality estimated from its quantisation tables (codec.decode), 100
    # for lossless sources: steps that adapt to compression (super-resolution) read it.
    source_quality: int = 100
    # The input frame's pixels are the step's to overwrite: the pipeline has no further use for
    # them, so a step may write its result there instead of holding a second full-size frame.
    # False for any other caller, whose input must stay as it was.
    overwrite_input: bool = False

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise ProcessingTimeout("processing took longer than the limit (VODIMG_MAX_SECONDS)")


def strip_rows(width: int) -> int:
    """Rows per strip for an image ``width`` pixels wide."""
    return max(MIN_STRIP_ROWS, min(STRIP_ROWS, STRIP_PIXELS // max(width, 1)))


def strips_of(pixels: np.ndarray, halo: int = 0) -> list[tuple[slice, slice, slice]]:
    """``row_strips`` for an image array (rows sized by its width)."""
    return row_strips(pixels.shape[0], halo, strip_rows(pixels.shape[1]))


def row_strips(height: int, halo: int, rows: int = STRIP_ROWS) -> list[tuple[slice, slice, slice]]:
    """(rows to read, rows to write, rows of the read block to keep) for strips of ``rows`` rows
    read with ``halo`` rows of context above and below."""
    result = []
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        read_top, read_bottom = max(0, top - halo), min(height, bottom + halo)
        result.append((slice(read_top, read_bottom), slice(top, bottom), slice(top - read_top, bottom - read_top)))
    return result


class DelayedRows:
    """Writes bands of rows into ``out`` one band late, so that ``out`` may be the very image the
    bands are computed from: a band is written only once the next band, which reads into it for
    context, has been computed. Bands come top to bottom, and each band's context must not reach
    past the band before it."""

    def __init__(self, out: np.ndarray):
        self.out = out
        self._pending: tuple[slice, np.ndarray] | None = None

    def put(self, rows: slice, pixels: np.ndarray) -> None:
        self.flush()
        self._pending = (rows, pixels)

    def flush(self) -> None:
        if self._pending is not None:
            rows, pixels = self._pending
            self.out[rows] = pixels
            self._pending = None


def map_strips(pixels: np.ndarray, function: Callable[[np.ndarray], np.ndarray], halo: int,
               rows: int | None = None, in_place: bool = False) -> np.ndarray:
    """``function(pixels)`` computed strip by strip into one output array: the same result when
    each output pixel depends only on input pixels at most ``halo`` rows away (and on nothing
    global), with the temporaries of one strip instead of the whole image's. ``in_place``: the
    output array is ``pixels`` itself (its old values are not needed afterwards)."""
    height = pixels.shape[0]
    rows = max(rows or strip_rows(pixels.shape[1]), halo)  # a strip's halo reaches one strip only
    if height <= rows + 2 * halo:
        if not in_place:
            return function(pixels)
        pixels[...] = function(pixels)
        return pixels
    writer = DelayedRows(pixels if in_place else np.empty_like(pixels))
    for read, write, keep in row_strips(height, halo, rows):
        writer.put(write, function(pixels[read])[keep])
    writer.flush()
    return writer.out


def to_planes(bgr: np.ndarray, code: int) -> list[np.ndarray]:
    """The three channels of ``cv2.cvtColor(bgr, code)`` as separate planes, converted strip by
    strip (the whole converted image is never held)."""
    planes = [np.empty(bgr.shape[:2], np.uint8) for _ in range(3)]
    for _, rows, _ in strips_of(bgr):
        converted = cv2.cvtColor(bgr[rows], code)
        for index, plane in enumerate(planes):
            plane[rows] = converted[..., index]
    return planes


def from_planes(planes: list[np.ndarray], code: int, out: np.ndarray | None = None) -> np.ndarray:
    """``cv2.cvtColor(cv2.merge(planes), code)``, strip by strip, into ``out`` if given (a uint8
    HxWx3 array whose values are not needed any more)."""
    out = np.empty((*planes[0].shape, 3), np.uint8) if out is None else out
    for _, rows, _ in strips_of(planes[0]):
        out[rows] = cv2.cvtColor(cv2.merge([plane[rows] for plane in planes]), code)
    return out


class RowUpscaler:
    """A small float32 map enlarged to ``width`` x ``height`` by bilinear interpolation (as
    cv2.resize INTER_LINEAR computes it, to float rounding), handed out a strip of rows at a time
    so the full-size map is never held: ``rows(slice)``."""

    def __init__(self, small: np.ndarray, width: int, height: int):
        self.wide = cv2.resize(small, (width, small.shape[0]), interpolation=cv2.INTER_LINEAR)
        if self.wide.ndim < small.ndim:  # cv2 drops a single channel axis
            self.wide = self.wide[..., None]
        self.scale = small.shape[0] / height

    def rows(self, rows: slice) -> np.ndarray:
        last = self.wide.shape[0] - 1
        y = np.clip((np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5) * self.scale - 0.5, 0.0, last)
        top = np.minimum(np.floor(y).astype(np.intp), max(last - 1, 0))
        below = np.minimum(top + 1, last)
        weight = (y - top).astype(np.float32).reshape((-1,) + (1,) * (self.wide.ndim - 1))
        return self.wide[top] * (1.0 - weight) + self.wide[below] * weight
