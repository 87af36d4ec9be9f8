"""BeautyConfig: skin effects stay on skin, filters move the statistics they promise."""

import cv2
import numpy as np
import pytest

from tests.engine.images import face_photo, no_face_photo, photo
from vodimg.engine import skin
from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import beauty

# regions of the astronaut portrait (512 x 512): cheeks, nose and mouth; one cheek; orange suit;
# flag and sky
FACE = (slice(110, 150), slice(195, 250))
CHEEK = (slice(108, 130), slice(190, 208))
SUIT = (slice(380, 440), slice(60, 160))
FLAG = (slice(0, 200), slice(0, 60))


def effect(bgr, type_, value=100, switch="ON"):
    options = {"BeautyEffectItems": [{"Switch": switch, "Type": type_, "Value": value}]}
    return beauty.apply(Frame(bgr=bgr), options, StepContext()).bgr


def look(bgr, type_, value=100):
    options = {"BeautyFilterItems": [{"Switch": "ON", "Type": type_, "Value": value}]}
    return beauty.apply(Frame(bgr=bgr), options, StepContext()).bgr


def lab(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float64)


def hf_energy(bgr, region):
    return cv2.Laplacian(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.CV_64F)[region].var()


def saturation(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[..., 1].astype(np.float64).mean()


def change(a, b, region):
    return np.abs(a[region].astype(np.int16) - b[region]).mean()


def test_skin_mask_covers_the_face_not_the_scene():
    mask = skin.skin_mask(face_photo())
    assert mask.dtype == np.float32 and mask.shape == face_photo().shape[:2]
    assert mask[FACE].mean() > 0.8
    assert mask[SUIT].mean() < 0.1 and mask[FLAG].mean() < 0.1
    assert skin.skin_mask(no_face_photo()).max() <= skin.AWAY_FROM_FACE + 1e-6


def test_smoothing_lowers_detail_on_skin_and_keeps_other_edges():
    src = face_photo()
    out = effect(src, "smooth", 100)
    assert hf_energy(out, CHEEK) < 0.5 * hf_energy(src, CHEEK)
    for region in (SUIT, FLAG):
        assert hf_energy(out, region) > 0.97 * hf_energy(src, region)
        assert change(out, src, region) < 0.5


def test_smoothing_is_stronger_with_value():
    src = face_photo()
    energies = [hf_energy(effect(src, "smooth", v), CHEEK) for v in (0, 30, 100)]
    assert energies[0] > energies[1] > energies[2]


def test_whitening_raises_skin_lightness_only():
    src = face_photo()
    out = effect(src, "whiten", 80)
    assert lab(out)[FACE][..., 0].mean() > lab(src)[FACE][..., 0].mean() + 8
    assert change(out, src, SUIT) < 1.0 and change(out, src, FLAG) < 1.0


def test_rosy_reddens_skin():
    src = face_photo()
    out = effect(src, "rosy", 100)
    assert lab(out)[FACE][..., 1].mean() > lab(src)[FACE][..., 1].mean() + 3  # a*: green -> red
    assert change(out, src, SUIT) < 1.0


def test_sharpen_effect_adds_detail():
    src = photo("chelsea")
    assert hf_energy(effect(src, "sharpen", 60), slice(None)) > 1.3 * hf_energy(src, slice(None))


@pytest.mark.parametrize("image", ["chelsea", "coffee"])
def test_filters_move_their_statistics(image):
    src = photo(image)
    red_minus_blue = lambda bgr: bgr[..., 2].astype(np.float64).mean() - bgr[..., 0].mean()
    assert red_minus_blue(look(src, "warm")) > red_minus_blue(src) + 8
    assert red_minus_blue(look(src, "cool")) < red_minus_blue(src) - 8
    assert saturation(look(src, "vivid")) > saturation(src) + 15
    mono = look(src, "mono")
    assert (mono.max(axis=2).astype(int) - mono.min(axis=2)).max() <= 2
    natural = look(src, "natural")
    assert lab(natural)[..., 0].std() > lab(src)[..., 0].std() and saturation(natural) > saturation(src)
    vintage = look(src, "vintage")
    assert np.percentile(lab(vintage)[..., 0], 1) > np.percentile(lab(src)[..., 0], 1) + 5  # faded blacks
    assert saturation(vintage) < saturation(src)


def test_filter_strength_follows_value():
    src = photo("chelsea")
    assert saturation(src) < saturation(look(src, "vivid", 40)) < saturation(look(src, "vivid", 100))


@pytest.mark.parametrize("type_", sorted(beauty.BEAUTY_EFFECT_TYPES))
def test_effect_value_zero_and_switch_off_change_nothing(type_):
    src = face_photo()
    assert np.array_equal(effect(src, type_, 0), src)
    assert np.array_equal(effect(src, type_, 100, switch="OFF"), src)


@pytest.mark.parametrize("type_", sorted(beauty.BEAUTY_FILTER_TYPES))
def test_filter_value_zero_changes_nothing(type_):
    src = photo("coffee")
    assert np.array_equal(look(src, type_, 0), src)


def test_items_apply_in_list_order_and_default_value_is_50():
    src = photo("chelsea")
    warm, mono = {"Switch": "ON", "Type": "warm", "Value": 100}, {"Switch": "ON", "Type": "mono", "Value": 100}
    run = lambda items: beauty.apply(Frame(bgr=src), {"BeautyFilterItems": items}, StepContext()).bgr
    warm_then_mono, mono_then_warm = run([warm, mono]), run([mono, warm])
    assert (warm_then_mono.max(axis=2).astype(int) - warm_then_mono.min(axis=2)).max() <= 2  # grey last
    assert red_minus_blue_mean(mono_then_warm) > 8  # tinted last
    assert np.array_equal(run([{"Switch": "ON", "Type": "warm"}]), look(src, "warm", 50))


def red_minus_blue_mean(bgr):
    return bgr[..., 2].astype(np.float64).mean() - bgr[..., 0].mean()


def test_type_names_match_case_insensitively():
    src = face_photo()
    assert np.array_equal(effect(src, "Smooth", 70), effect(src, "smooth", 70))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"BeautyEffectItems": [{"Switch": "ON", "Type": "x", "Value": 5}]},
            "BeautyConfig.BeautyEffectItems.0.Type: unknown beauty effect 'x'; "
            "expected one of rosy, sharpen, smooth, whiten",
        ),
        (
            {"BeautyFilterItems": [{"Switch": "ON", "Type": "warm"}, {"Switch": "OFF", "Type": "sepia"}]},
            "BeautyConfig.BeautyFilterItems.1.Type: unknown beauty filter 'sepia'; "
            "expected one of cool, mono, natural, vintage, vivid, warm",
        ),
    ],
)
def test_unknown_type_is_a_clear_error(options, message):
    with pytest.raises(InvalidConfig) as error:
        beauty.apply(Frame(bgr=photo("chelsea")), options, StepContext())
    assert str(error.value) == message


def test_alpha_is_kept():
    src = face_photo()
    alpha = np.full(src.shape[:2], 128, np.uint8)
    options = {"BeautyEffectItems": [{"Switch": "ON", "Type": "smooth", "Value": 60}]}
    out = beauty.apply(Frame(bgr=src, alpha=alpha), options, StepContext())
    assert out.alpha is alpha and out.bgr.shape == src.shape
