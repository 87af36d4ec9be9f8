"""The in-memory image that flows through the pipeline steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from vodimg.engine.errors import ProcessingTimeout


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

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise ProcessingTimeout("processing took longer than the limit (VODIMG_MAX_SECONDS)")
