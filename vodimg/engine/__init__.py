"""The image engine: image bytes and a ProcessImageConfigure in, image bytes and metadata out.

Pure: no HTTP, storage or task code, and nothing of ours outside ``vodimg.engine``. Errors are
``vodimg.engine.errors.EngineError`` subclasses whose ``str()`` is one line a person can act on.
Step order, defaults and limits: docs/engine.md.
"""

from __future__ import annotations

from typing import Callable

from vodimg.engine.errors import (
    EngineError,
    InvalidConfig,
    InvalidImage,
    LimitExceeded,
    ProcessingTimeout,
    UnsupportedImage,
)
from vodimg.engine.limits import Limits
from vodimg.engine.pipeline import ProcessedImage

__all__ = [
    "process_image",
    "ProcessedImage",
    "Limits",
    "EngineError",
    "InvalidConfig",
    "InvalidImage",
    "LimitExceeded",
    "ProcessingTimeout",
    "UnsupportedImage",
]


def process_image(
    data: bytes,
    configure: dict,
    limits: Limits | None = None,
    progress: Callable[[float], None] | None = None,
) -> ProcessedImage:
    """Process one image as a ProcessImageConfigure (already validated) says.

    ``limits`` defaults to ``Limits.from_env()``. ``progress(fraction)`` is called with the
    overall fraction done, 0.0-1.0, rising, weighted by each step's typical cost.
    Raises InvalidImage, UnsupportedImage, LimitExceeded, ProcessingTimeout or InvalidConfig.
    """
    from vodimg.engine import pipeline

    return pipeline.run(data, configure, limits or Limits.from_env(), progress)
