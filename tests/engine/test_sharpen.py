"""SharpEnhance: more detail with more Intensity, no halos, Intensity 0 is a no-op."""

import cv2
import numpy as np
import pytest

from tests.engine.images import photo
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import sharpen

NEIGHBOURHOOD = np.ones((3, 3), np.uint8)


def run(bgr, intensity=None):
    options = {"Switch": "ON"} if intensity is None else {"Switch": "ON", "Intensity": intensity}
    return sharpen.apply(Frame(bgr=bgr), options, StepContext()).bgr


def luma(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def laplacian_variance(bgr):
    return cv2.Laplacian(luma(bgr), cv2.CV_64F).var()


def overshoot(before, after):
    """How far each output luma leaves the input's 3x3 neighbourhood range, in levels."""
    y1 = luma(after).astype(np.int16)
    above = y1 - cv2.dilate(luma(before), NEIGHBOURHOOD).astype(np.int16)
    below = cv2.erode(luma(before), NEIGHBOURHOOD).astype(np.int16) - y1
    return np.maximum(np.maximum(above, below), 0)


@pytest.mark.parametrize("options", [{"Switch": "ON"}, {"Switch": "ON", "Intensity": 0.0}])
def test_intensity_zero_is_bit_identical(options):
    src = photo("astronaut")
    out = sharpen.apply(Frame(bgr=src), options, StepContext()).bgr
    assert np.array_equal(out, src)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_high_frequency_energy_rises_with_intensity(name):
    src = photo(name)
    energies = [laplacian_variance(src)] + [laplacian_variance(run(src, i)) for i in (0.25, 0.5, 1.0)]
    assert energies[1] > 1.3 * energies[0]
    assert energies[1] < energies[2] < energies[3]


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_overshoot_beyond_the_neighbourhood_stays_small(name):
    src = photo(name)
    ours = overshoot(src, run(src, 1.0))
    assert np.percentile(ours, 99.9) <= 2
    # a plain unsharp mask of the same strength overshoots a lot: the check is meaningful
    blurred = cv2.GaussianBlur(src, (5, 5), 1.0)
    plain = cv2.addWeighted(src, 1.0 + sharpen.MAX_AMOUNT, blurred, -sharpen.MAX_AMOUNT, 0.0)
    assert np.percentile(overshoot(src, plain), 99.9) > 10


def test_soft_edge_gets_steeper_without_halo():
    ramp = np.clip(np.arange(64, dtype=np.float32) * 20.0 - 540.0, 40, 200)  # 40 -> 200 over 8 px
    src = np.repeat(np.repeat(ramp[None, :, None], 32, axis=0), 3, axis=2).astype(np.uint8)
    src = cv2.GaussianBlur(src, (0, 0), 1.5)
    out = run(src, 1.0)
    assert out.min() >= src.min() and out.max() <= src.max()
    assert np.abs(np.diff(luma(out)[16].astype(int))).max() > np.abs(np.diff(luma(src)[16].astype(int))).max()


def test_colour_is_kept():
    src = photo("coffee")
    out = run(src, 1.0)
    cr_cb = lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)[..., 1:].astype(np.int16)
    assert np.abs(cr_cb(out) - cr_cb(src)).mean() < 1.0
