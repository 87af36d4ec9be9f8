"""Real test images for engine tests, made offline from scikit-image's bundled photos.

Every helper returns uint8 BGR (OpenCV order). Degraded versions are seeded, so tests are
repeatable.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data

# Photos scikit-image ships (colour, natural content).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def photo(name: str = "astronaut") -> np.ndarray:
    rgb = getattr(data, name)()
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    return np.ascontiguousarray(cv2.cvtColor(rgb[..., :3], cv2.COLOR_RGB2BGR))


def face_photo() -> np.ndarray:
    """A photo with one clear frontal face (the astronaut portrait)."""
    return photo("astronaut")


def no_face_photo() -> np.ndarray:
    return photo("coffee")


def with_gaussian_noise(bgr: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = bgr.astype(np.float32) + rng.normal(0.0, sigma, bgr.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def with_camera_noise(bgr: np.ndarray, shot: float, read: float, seed: int = 0) -> np.ndarray:
    """Signal-dependent (Poisson-Gaussian) noise as a camera sensor makes it, on the 0-1 scale:
    shot noise of variance ``shot`` * intensity (photon counts intensity / shot) plus Gaussian
    read noise of std ``read``; rounded and clipped to 8 bits."""
    rng = np.random.default_rng(seed)
    unit = shot * 255.0  # one photon, in 8-bit levels
    noisy = rng.poisson(bgr.astype(np.float64) / unit) * unit + rng.normal(0.0, read * 255.0, bgr.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def darkened(bgr: np.ndarray, gain: float = 0.25, gamma: float = 1.6) -> np.ndarray:
    """A low-light version: lower exposure and a steeper tone curve."""
    x = (bgr.astype(np.float32) / 255.0) ** gamma * gain
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def downscaled(bgr: np.ndarray, factor: int = 2) -> np.ndarray:
    h, w = bgr.shape[:2]
    return cv2.resize(bgr, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def encode(bgr: np.ndarray, ext: str = ".jpg", quality: int = 90) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, bgr, params)
    assert ok
    return buf.tobytes()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


# The spec's ModifyProcessImageAsyncTemplate example without SuperResolution (the seed template)
SEED_WITHOUT_SR = {
    "EncodeConfig": {"Format": "JPEG", "Quality": 100},
    "EnhanceConfig": {
        "Denoise": {"Switch": "ON", "Type": "weak"},
        "ImageQualityEnhance": {"Switch": "ON", "Type": "weak"},
        "ColorEnhance": {"Switch": "ON", "Type": "weak"},
        "SharpEnhance": {"Switch": "ON", "Intensity": 1},
        "FaceEnhance": {"Switch": "ON", "Intensity": 1},
        "LowLightEnhance": {"Switch": "ON", "Type": "normal"},
    },
}
