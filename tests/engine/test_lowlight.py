"""LowLightEnhance: dark regions rise a lot, bright pixels and colours stay, nothing clips; a
well-exposed photo is left alone and dark neutrals stay neutral."""

import cv2
import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from tests.engine.images import darkened, photo
from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import lowlight

OPTIONS = {"Switch": "ON", "Type": "normal"}


def run(bgr, options=OPTIONS):
    return lowlight.apply(Frame(bgr=bgr), options, StepContext()).bgr


def gray(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def lab(bgr):
    return rgb2lab(bgr[..., ::-1] / 255.0)


def chroma(bgr):
    lab_ = lab(bgr)
    return np.hypot(lab_[..., 1], lab_[..., 2])


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "immunohistochemistry"])
def test_well_exposed_photo_changes_by_at_most_2_ciede2000(name):
    src = photo(name)
    assert deltaE_ciede2000(lab(src), lab(run(src))).mean() <= 2.0


def test_black_collar_of_the_astronaut_stays_black():
    src = photo("astronaut")
    collar = src.max(axis=2) < 12  # the black suit parts, mean RGB about (1, 1, 1) to (7, 4, 3)
    assert collar.sum() > 10000
    assert np.abs(run(src)[collar].astype(int) - src[collar]).mean() <= 1.0


def test_lift_follows_the_exposure():
    # the darker the photo, the larger the lift; a well-exposed one gets none
    src = photo("coffee")
    lifts = [gray(run(x)).mean() - gray(x).mean()
             for x in (src, darkened(src, gain=0.7, gamma=1.1), darkened(src, gain=0.4, gamma=1.3), darkened(src))]
    assert lifts[0] == 0 and lifts[1] < lifts[2] < lifts[3]


def test_dark_near_black_with_a_cast_stays_neutral():
    # the astronaut collar's near-black (RGB 7, 4, 3) inside a dark photo: lifted, but not brown
    dark = darkened(photo("coffee"))
    dark[40:140, 40:140] = (3, 4, 7)
    out = run(dark)[90, 90]
    assert int(out.min()) >= 20  # it is lifted ...
    assert chroma(out[None, None])[0, 0] <= 2.0  # ... and stays neutral (a plain lift: about 11)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_chroma_of_dark_neutral_pixels_does_not_grow(name):
    src = photo(name)
    dark = darkened(src)
    neutral = (chroma(src) < 5) & (lab(dark)[..., 0] < 25)  # grey or black things, dark in the input
    assert neutral.sum() > 500
    assert chroma(run(dark))[neutral].mean() <= chroma(dark)[neutral].mean() + 0.5


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_darkest_regions_rise_a_lot(name):
    dark = darkened(photo(name))
    out = run(dark)
    darkest = gray(dark) <= np.percentile(gray(dark), 30)
    before, after = gray(dark)[darkest].mean(), gray(out)[darkest].mean()
    assert after >= 2.5 * before + 2


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_bright_pixels_change_at_most_a_few_levels(name):
    src = photo(name)
    out = run(src)
    bright = gray(src) > 180
    assert bright.sum() > 1000
    change = np.abs(out.astype(np.int16) - src.astype(np.int16)).max(axis=2)[bright]
    assert np.percentile(change, 99) <= 3


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_no_clipping_increase(name):
    dark = darkened(photo(name))
    out = run(dark)
    assert (out == 255).any(axis=2).mean() <= (dark == 255).any(axis=2).mean() + 1e-4


def test_colour_ratios_are_kept():
    dark = darkened(photo("astronaut"))
    out = run(dark)
    lit = dark.max(axis=2) >= 20  # ratios of near-black pixels are dominated by rounding
    chroma_before = dark[lit] / dark[lit].sum(axis=1, keepdims=True).astype(np.float64)
    chroma_after = out[lit] / np.maximum(out[lit].sum(axis=1, keepdims=True), 1).astype(np.float64)
    assert np.abs(chroma_after - chroma_before).mean() < 0.01


def test_already_bright_image_is_left_alone():
    src = photo("chelsea").astype(np.float32)
    bright = np.rint(src * 0.3 + 0.7 * 255).astype(np.uint8)
    assert np.array_equal(run(bright), bright)


def test_deterministic_and_keeps_alpha_and_size():
    dark = darkened(photo("coffee"))
    alpha = np.full(dark.shape[:2], 77, np.uint8)
    first = lowlight.apply(Frame(bgr=dark, alpha=alpha), {"Switch": "ON"}, StepContext())
    second = lowlight.apply(Frame(bgr=dark.copy(), alpha=alpha), {"Switch": "ON"}, StepContext())
    assert np.array_equal(first.bgr, second.bgr)
    assert first.bgr.shape == dark.shape and first.bgr.dtype == np.uint8
    assert first.alpha is alpha


def test_unknown_type_is_a_clear_error():
    with pytest.raises(InvalidConfig) as error:
        lowlight.apply(Frame(bgr=photo("chelsea")), {"Switch": "ON", "Type": "vivid"}, StepContext())
    assert str(error.value) == "LowLightEnhance.Type must be normal, not 'vivid'"
