"""Cross-field rules of a whole ProcessImageConfigure, applied by the validator to Create/Modify
input and callable directly (as the domain does after Modify's merge)."""

from __future__ import annotations

import pytest

from vodimg.errors import ApiError
from vodimg.validation import check_configure, validate_request, validate_structure

SR_ON = {"Switch": "ON", "Type": "lq", "Size": 2}


def enhance(**capabilities) -> dict:
    return {"EnhanceConfig": capabilities}


def refused(configure: dict, path: str = "ProcessImageConfigure") -> ApiError:
    with pytest.raises(ApiError) as caught:
        check_configure(configure, path)
    assert caught.value.code == "InvalidParameterValue"
    return caught.value


@pytest.mark.parametrize("advanced", [
    {"Switch": "ON"},
    {},  # Switch defaults to ON (spec: 默认值：ON)
    {"Mode": "percent", "Percent": 2.0},
])
def test_super_resolution_and_advanced_cannot_both_be_on(advanced):
    error = refused(enhance(SuperResolution=SR_ON, AdvancedSuperResolution=advanced))
    assert error.message.startswith(
        "ProcessImageConfigure.EnhanceConfig.SuperResolution and "
        "ProcessImageConfigure.EnhanceConfig.AdvancedSuperResolution cannot both be ON")


@pytest.mark.parametrize("sr, advanced", [
    (SR_ON, {"Switch": "OFF"}),
    ({"Switch": "OFF"}, {"Switch": "ON"}),
    (SR_ON, None),
    (None, {"Switch": "ON", "Mode": "percent"}),
])
def test_one_super_resolution_at_a_time_is_fine(sr, advanced):
    capabilities = {name: value for name, value in
                    (("SuperResolution", sr), ("AdvancedSuperResolution", advanced)) if value is not None}
    check_configure(enhance(**capabilities))


@pytest.mark.parametrize("mode", ["fixed", "aspect"])
def test_sized_modes_need_a_target_size(mode):
    for sizes in ({}, {"Width": 1280}, {"Height": 720}, {"LongSide": 1280}, {"Width": 1280, "ShortSide": 720}):
        error = refused(enhance(AdvancedSuperResolution={"Mode": mode, **sizes}))
        assert error.message == (
            f"ProcessImageConfigure.EnhanceConfig.AdvancedSuperResolution: Mode {mode} needs a target "
            "size: Width and Height, or LongSide and ShortSide.")
    for sizes in ({"Width": 1280, "Height": 720}, {"LongSide": 1280, "ShortSide": 720},
                  {"Width": 1280, "LongSide": 1280, "ShortSide": 720}):
        check_configure(enhance(AdvancedSuperResolution={"Mode": mode, **sizes}))


def test_percent_mode_and_switched_off_capability_need_no_size():
    check_configure(enhance(AdvancedSuperResolution={}))  # Mode percent, Percent 2.0 by default
    check_configure(enhance(AdvancedSuperResolution={"Mode": "percent", "Percent": 1.5}))
    check_configure(enhance(AdvancedSuperResolution={"Switch": "OFF", "Mode": "fixed"}))


@pytest.mark.parametrize("pattern, ok", [
    ({}, True),
    ({"TransparencyThreshold": 30, "OpaqueThreshold": 31}, True),
    ({"TransparencyThreshold": 30, "OpaqueThreshold": 30}, False),
    ({"TransparencyThreshold": 126}, True),  # default OpaqueThreshold 127
    ({"TransparencyThreshold": 127}, False),
    ({"OpaqueThreshold": 31}, True),  # default TransparencyThreshold 30
    ({"OpaqueThreshold": 30}, False),
    ({"OpaqueThreshold": 0, "TransparencyThreshold": 255}, False),
])
def test_pattern_opaque_threshold_must_exceed_transparency(pattern, ok):
    configure = {"AiCutOutConfig": {"Type": "pattern", "PatternConfig": pattern}}
    if ok:
        check_configure(configure)
    else:
        error = refused(configure, "Conf")
        assert error.message.startswith("Conf.AiCutOutConfig.PatternConfig.OpaqueThreshold (")


def test_the_validator_applies_the_cross_field_rules_to_create_modify_and_structures():
    clash = enhance(SuperResolution=SR_ON, AdvancedSuperResolution={"Switch": "ON"})
    for action, params in (("CreateProcessImageAsyncTemplate", {"ProcessImageConfigure": clash}),
                           ("ModifyProcessImageAsyncTemplate", {"Definition": 10001, "ProcessImageConfigure": clash})):
        with pytest.raises(ApiError) as caught:
            validate_request(action, params)
        assert caught.value.code == "InvalidParameterValue"
    with pytest.raises(ApiError) as caught:
        validate_structure("ProcessImageAsyncTask", clash, "CONF")
    assert caught.value.message.startswith("CONF.EnhanceConfig.SuperResolution and")


def test_an_empty_configure_passes():
    check_configure({})
    assert validate_request("CreateProcessImageAsyncTemplate", {"ProcessImageConfigure": {}}) == {
        "ProcessImageConfigure": {}}
