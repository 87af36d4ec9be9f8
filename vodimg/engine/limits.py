"""Limits on untrusted input, all configurable (see docs/engine.md).

Defaults are safe for one worker process per core on a machine with 1-2 GB of memory per core.
Each can be overridden by an environment variable read by :meth:`Limits.from_env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping

# Environment variable -> (field name, type).
ENV_VARS = {
    "VODIMG_MAX_INPUT_BYTES": ("max_input_bytes", int),
    "VODIMG_MAX_INPUT_PIXELS": ("max_input_pixels", int),
    "VODIMG_MAX_OUTPUT_PIXELS": ("max_output_pixels", int),
    "VODIMG_MAX_SECONDS": ("max_seconds", float),
    "VODIMG_MAX_MEMORY_BYTES": ("max_memory_bytes", int),
}


@dataclass(frozen=True)
class Limits:
    """What one image may cost. Every value must be positive."""

    # Encoded input size: 32 MiB (the API's Base64 input is at most 4 MB; uploads and URLs more).
    max_input_bytes: int = 32 * 1024 * 1024
    # Input width * height, read from the file header before any pixel is decoded: 50 megapixels
    # (an 8160x6120 phone photo); a decoded 50 MP image is 150 MB of BGR.
    max_input_pixels: int = 50_000_000
    # Output width * height after every step (super-resolution doubles each side): 8192x8192.
    max_output_pixels: int = 8192 * 8192
    # Wall-clock seconds for one image, decode to encode.
    max_seconds: float = 300.0
    # Memory for one image: 2 GiB. The engine refuses, before decoding, an image whose estimated
    # working memory is over it (vodimg/engine/memory.py); the worker's engine pool kills a child
    # whose resident memory (models included) goes over it (vodimg.worker.engine_pool).
    max_memory_bytes: int = 2 * 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"limit {item.name} must be a positive number, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Limits":
        """Defaults overridden by the VODIMG_MAX_* variables; a bad value raises ValueError."""
        environ = os.environ if environ is None else environ
        values = {}
        for var, (name, kind) in ENV_VARS.items():
            text = environ.get(var, "").strip()
            if not text:
                continue
            try:
                values[name] = kind(text)
            except ValueError:
                raise ValueError(f"{var} must be a positive {kind.__name__}, got {text!r}") from None
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{err} (from the VODIMG_MAX_* environment variables)") from None
