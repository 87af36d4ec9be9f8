"""ColorEnhance: saturation rises with strength, skin is protected, nothing new clips."""

import cv2
import numpy as np
import pytest

from tests.engine.images import photo
from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import color

TYPES = ("weak", "normal", "strong")


def run(bgr, options):
    return color.apply(Frame(bgr=bgr), options, StepContext()).bgr


def saturation(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[..., 1].astype(np.float64)


def clipped_share(bgr):
    return ((bgr == 0) | (bgr == 255)).any(axis=2).mean()


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_saturation_rises_more_with_strength(name):
    src = photo(name)
    means = [saturation(src).mean()] + [saturation(run(src, {"Switch": "ON", "Type": t})).mean() for t in TYPES]
    assert means[1] > means[0] + 3
    assert means[1] < means[2] < means[3]
    assert means[3] > means[0] + 12


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_clipped_share_grows_by_less_than_half_a_percent(name):
    src = photo(name)
    out = run(src, {"Switch": "ON", "Type": "strong"})
    assert clipped_share(out) - clipped_share(src) < 0.005


def test_default_type_is_weak():
    src = photo("chelsea")
    assert np.array_equal(run(src, {"Switch": "ON"}), run(src, {"Switch": "ON", "Type": "weak"}))


def test_skin_hues_change_less_than_other_colours():
    # two patches of equal saturation and brightness: a skin tone (hue ~20 deg) and a blue
    hsv = np.zeros((64, 128, 3), np.uint8)
    hsv[:, :64] = (10, 100, 200)  # OpenCV hue unit is 2 degrees
    hsv[:, 64:] = (110, 100, 200)
    src = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    gain = saturation(run(src, {"Switch": "ON", "Type": "strong"})) - saturation(src)
    skin_gain, blue_gain = gain[:, :64].mean(), gain[:, 64:].mean()
    assert blue_gain > 20
    assert skin_gain < 0.5 * blue_gain


def test_skin_of_the_astronaut_changes_less_than_the_suit():
    src = photo("astronaut")
    out = run(src, {"Switch": "ON", "Type": "strong"})
    face, suit = (slice(110, 150), slice(200, 250)), (slice(380, 440), slice(60, 160))
    face_gain = saturation(out)[face].mean() - saturation(src)[face].mean()
    suit_gain = saturation(out)[suit].mean() - saturation(src)[suit].mean()
    assert face_gain < suit_gain


def test_brightest_channel_and_greys_are_kept():
    src = photo("coffee")
    out = run(src, {"Switch": "ON", "Type": "strong"})
    assert np.abs(out.max(axis=2).astype(int) - src.max(axis=2)).max() <= 2
    grey = np.full((16, 16, 3), 128, np.uint8)
    assert np.array_equal(run(grey, {"Switch": "ON", "Type": "strong"}), grey)


def test_unknown_type_is_a_clear_error():
    with pytest.raises(InvalidConfig) as error:
        color.apply(Frame(bgr=photo("chelsea")), {"Switch": "ON", "Type": "vivid"}, StepContext())
    assert str(error.value) == "ColorEnhance.Type must be weak, normal or strong, not 'vivid'"
