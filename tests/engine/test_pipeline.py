"""The pipeline: step order and switches, dispatch to the step modules, progress, deadline."""

from __future__ import annotations

import importlib.util
import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.engine.images import darkened, encode, photo, with_gaussian_noise
from vodimg.engine import InvalidConfig, LimitExceeded, Limits, ProcessingTimeout, process_image
from vodimg.engine import codec, pipeline

DOCUMENTED_ORDER = ["lowlight", "denoise", "superres", "quality", "face", "color", "sharpen", "beauty", "cutout"]
BEAUTY_ON = {"BeautyEffectItems": [{"Switch": "ON", "Type": "Whiten", "Value": 50}]}


def every_capability(switch: str, advanced_sr: bool = False) -> dict:
    enhance = {
        "LowLightEnhance": {"Switch": switch, "Type": "normal"},
        "Denoise": {"Switch": switch, "Type": "weak"},
        "ImageQualityEnhance": {"Switch": switch, "Type": "weak"},
        "FaceEnhance": {"Switch": switch, "Intensity": 0.5},
        "ColorEnhance": {"Switch": switch, "Type": "weak"},
        "SharpEnhance": {"Switch": switch, "Intensity": 0.5},
    }
    if advanced_sr:
        enhance["AdvancedSuperResolution"] = {"Switch": switch, "Type": "standard", "Mode": "percent", "Percent": 1.5}
    else:
        enhance["SuperResolution"] = {"Switch": switch, "Type": "lq", "Size": 2}
    return {
        "EncodeConfig": {"Format": "PNG"},
        "EnhanceConfig": enhance,
        "BeautyConfig": {
            "BeautyEffectItems": [{"Switch": switch, "Type": "Whiten", "Value": 50}],
            "BeautyFilterItems": [{"Switch": switch, "Type": "warm", "Value": 50}],
        },
        "AiCutOutConfig": {"Switch": switch, "Type": "foreground"},
    }


def available(spec: pipeline.StepSpec) -> bool:
    return importlib.util.find_spec(f"{pipeline.STEP_PACKAGE}.{spec.module}") is not None


def small_photo_jpeg(noise_sigma: float = 0.0, dark: bool = False) -> bytes:
    crop = photo("astronaut")[96:224:1, 160:320]  # a 160x128 face crop
    crop = darkened(crop) if dark else crop
    return encode(with_gaussian_noise(crop, noise_sigma, seed=1) if noise_sigma else crop, ".jpg", 90)


# --- plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize("advanced_sr", [False, True])
def test_steps_run_in_the_documented_order(advanced_sr):
    steps = pipeline.plan(every_capability("ON", advanced_sr))
    assert [step.spec.module for step in steps] == DOCUMENTED_ORDER
    superres = steps[2]
    assert superres.spec.function == ("apply_advanced" if advanced_sr else "apply")
    assert superres.options["Type"] == ("standard" if advanced_sr else "lq")


def test_every_switch_off_plans_nothing():
    assert pipeline.plan(every_capability("OFF")) == []
    assert pipeline.plan({}) == []


def test_switches_whose_spec_default_is_on():
    configure = {"EnhanceConfig": {"AdvancedSuperResolution": {"Type": "super"}, "Denoise": {}}, "AiCutOutConfig": {}}
    assert [step.spec.module for step in pipeline.plan(configure)] == ["denoise", "superres", "cutout"]
    # Capabilities whose Switch has no default stay off without one; left-out ones never run.
    assert pipeline.plan({"EnhanceConfig": {"SharpEnhance": {"Intensity": 1.0}, "SuperResolution": None}}) == []


def test_beauty_runs_when_an_item_is_on():
    off = {"BeautyEffectItems": [{"Switch": "OFF", "Type": "Whiten"}], "BeautyFilterItems": []}
    assert pipeline.plan({"BeautyConfig": off}) == []
    assert pipeline.plan({"BeautyConfig": {}}) == []
    with_filter_on = {**off, "BeautyFilterItems": [{"Switch": "ON", "Type": "warm", "Value": 10}]}
    steps = pipeline.plan({"BeautyConfig": with_filter_on})
    assert [step.spec.module for step in steps] == ["beauty"]
    assert steps[0].options == with_filter_on  # the whole ImageBeautyConfig, as the API spells it


def test_a_missing_step_module_is_a_clear_config_error():
    step = pipeline.PlannedStep(pipeline.StepSpec("no_such_step", "EnhanceConfig.NoSuchStep", 1), {"Switch": "ON"})
    with pytest.raises(InvalidConfig, match="not installed"):
        pipeline.load_step(step)


def test_a_step_refuses_bad_options_before_decoding():
    if not available(pipeline.ENHANCE_STEPS[8]):
        pytest.skip("beauty step not written yet")
    configure = {"BeautyConfig": {"BeautyEffectItems": [{"Switch": "ON", "Type": "NoSuchLook"}]}}
    with pytest.raises(InvalidConfig, match="NoSuchLook"):
        process_image(b"not even an image", configure)  # refused before the bytes are looked at


# --- running --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WebP"])
def test_every_switch_off_is_a_plain_re_encode(fmt):
    bgr = photo("coffee")
    data = encode(bgr, {"JPEG": ".jpg", "PNG": ".png", "WebP": ".webp"}[fmt])
    configure = every_capability("OFF")
    del configure["EncodeConfig"]
    result = process_image(data, configure)
    plain = process_image(data, {})
    assert result == plain
    source = codec.decode(data, Limits())
    assert result.data == codec.encode(source.frame, codec.output_settings(source, None))


def test_same_input_gives_the_same_bytes():
    configure = every_capability("ON")
    configure["EnhanceConfig"] = {
        name: options
        for name, options in configure["EnhanceConfig"].items()
        if available(next(s for s in pipeline.ENHANCE_STEPS if s.capability == f"EnhanceConfig.{name}"))
    }
    for key, module in (("BeautyConfig", "beauty"), ("AiCutOutConfig", "cutout")):
        if importlib.util.find_spec(f"{pipeline.STEP_PACKAGE}.{module}") is None:
            del configure[key]
    data = small_photo_jpeg()
    first = process_image(data, configure)
    assert process_image(data, configure).data == first.data


CASES = {
    "EnhanceConfig.LowLightEnhance": {"Switch": "ON"},
    "EnhanceConfig.Denoise": {"Switch": "ON", "Type": "weak"},
    "EnhanceConfig.SuperResolution": {"Switch": "ON", "Type": "hq", "Size": 2},
    "EnhanceConfig.AdvancedSuperResolution": {"Switch": "ON", "Type": "super", "Mode": "fixed", "Width": 200, "Height": 150},
    "EnhanceConfig.ImageQualityEnhance": {"Switch": "ON", "Type": "normal"},
    "EnhanceConfig.FaceEnhance": {"Switch": "ON", "Intensity": 0.8},
    "EnhanceConfig.ColorEnhance": {"Switch": "ON", "Type": "strong"},
    "EnhanceConfig.SharpEnhance": {"Switch": "ON", "Intensity": 0.8},
    "BeautyConfig": BEAUTY_ON,
    "AiCutOutConfig": {"Switch": "ON", "Type": "foreground"},
}
EXPECTED_SIZE = {"EnhanceConfig.SuperResolution": (320, 256), "EnhanceConfig.AdvancedSuperResolution": (200, 150)}


def configure_with(capability: str, options: dict) -> dict:
    configure: dict = {"EncodeConfig": {"Format": "PNG"}}
    parent, _, name = capability.rpartition(".")
    (configure.setdefault(parent, {}) if parent else configure)[name] = options
    return configure


@pytest.mark.parametrize("spec", pipeline.ENHANCE_STEPS, ids=[s.capability for s in pipeline.ENHANCE_STEPS])
def test_each_capability_dispatches_to_its_step(spec):
    if not available(spec):
        pytest.skip(f"{spec.module} step not written yet")
    # Denoise leaves a clean photo as it is (docs/engine-denoise.md): give it noise to remove;
    # LowLightEnhance leaves a well-exposed one as it is (docs/engine-enhance.md): give it a dark one.
    data = small_photo_jpeg(noise_sigma=10.0 if spec.module == "denoise" else 0.0, dark=spec.module == "lowlight")
    result = process_image(data, configure_with(spec.capability, CASES[spec.capability]))
    assert (result.width, result.height) == EXPECTED_SIZE.get(spec.capability, (160, 128))
    decoded = np.asarray(Image.open(io.BytesIO(result.data)))
    assert decoded.shape[:2] == (result.height, result.width)
    if spec.module == "cutout":
        assert decoded.shape[2] == 4 and decoded[..., 3].min() < 255  # transparency made and kept
    else:
        plain = np.asarray(Image.open(io.BytesIO(process_image(data, {"EncodeConfig": {"Format": "PNG"}}).data)))
        assert decoded.shape != plain.shape or not np.array_equal(decoded, plain)  # the step did something


def test_progress_rises_to_one_and_is_weighted_by_step_cost():
    reports: list[float] = []
    configure = {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 0.5}}}
    if not available(pipeline.ENHANCE_STEPS[7]):
        configure = {}
    process_image(small_photo_jpeg(), configure, progress=reports.append)
    assert reports and reports[-1] == 1.0
    assert all(later > earlier for earlier, later in zip(reports, reports[1:]))

    tracker_reports: list[float] = []
    tracker = pipeline.ProgressTracker([2, 60, 3], tracker_reports.append)
    tracker.at(0, 1.0)
    tracker.at(1, 0.5)
    tracker.at(1, 0.25)  # a step going back never makes the total fall
    tracker.at(2, 1.0)
    assert tracker_reports == pytest.approx([2 / 65, 32 / 65, 1.0])


def test_deadline_is_enforced():
    with pytest.raises(ProcessingTimeout, match="time limit|longer than"):
        process_image(small_photo_jpeg(), {}, Limits(max_seconds=1e-9))


def test_deadline_stops_a_long_step():
    spec = pipeline.ENHANCE_STEPS[2]
    if not available(spec):
        pytest.skip("superres step not written yet")
    data = encode(photo("astronaut"), ".jpg", 90)
    configure = configure_with(spec.capability, {"Switch": "ON", "Type": "hq", "Size": 2})
    started = time.monotonic()
    with pytest.raises(ProcessingTimeout):
        process_image(data, configure, Limits(max_seconds=0.05))
    assert time.monotonic() - started < 5


def test_output_pixel_limit_applies_after_a_step():
    spec = pipeline.ENHANCE_STEPS[3]
    if not available(spec):
        pytest.skip("superres step not written yet")
    configure = configure_with(spec.capability, {"Switch": "ON", "Type": "super", "Mode": "percent", "Percent": 2.0})
    with pytest.raises(LimitExceeded):
        process_image(small_photo_jpeg(), configure, Limits(max_output_pixels=160 * 128 * 2))


def test_limits_come_from_the_environment():
    limits = Limits.from_env({"VODIMG_MAX_INPUT_BYTES": "1000", "VODIMG_MAX_INPUT_PIXELS": " 2000 ",
                              "VODIMG_MAX_OUTPUT_PIXELS": "3000", "VODIMG_MAX_SECONDS": "1.5"})  # fmt: skip
    assert limits == Limits(max_input_bytes=1000, max_input_pixels=2000, max_output_pixels=3000, max_seconds=1.5)
    assert Limits.from_env({}) == Limits()
    with pytest.raises(ValueError, match="VODIMG_MAX_INPUT_PIXELS"):
        Limits.from_env({"VODIMG_MAX_INPUT_PIXELS": "lots"})
    with pytest.raises(ValueError, match="max_seconds"):
        Limits.from_env({"VODIMG_MAX_SECONDS": "0"})
