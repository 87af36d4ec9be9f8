"""The spec-driven validator: examples, types, nulls, unknown and missing members at every depth,
64-bit integers, hostile nesting, documented ranges and enums, form-string coercion."""

from __future__ import annotations

import copy
import math

import pytest

from vodimg.errors import ApiError
from vodimg.validation import validate_request, validate_structure
from tests.validation.specdata import (
    FULL_CONFIGURE, TEMPLATE_ACTIONS, dotted, example_bodies, full_configure, get_at, objects,
    set_at, stringify, walk,
)

CREATE = "CreateProcessImageAsyncTemplate"
MODIFY = "ModifyProcessImageAsyncTemplate"
DESCRIBE = "DescribeProcessImageAsyncTemplates"
DELETE = "DeleteProcessImageAsyncTemplate"


def refused(action: str, params, *, from_strings: bool = False) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validate_request(action, params, from_strings=from_strings)
    return caught.value


def create_with(configure: dict) -> dict:
    return {"ProcessImageConfigure": configure}


CONFIGURE_MEMBERS = list(walk("ProcessImageAsyncTask", FULL_CONFIGURE))
STRUCT_PATHS = [path for path, _, member in CONFIGURE_MEMBERS
                if member["member"] in objects() and member["type"] == "object"]


# --- the spec's examples and a configure using every member ------------------------------------

@pytest.mark.parametrize("action", TEMPLATE_ACTIONS)
def test_every_spec_example_validates_unchanged(action):
    bodies = example_bodies(action)
    assert bodies
    for body in bodies:
        assert validate_request(action, body) == body


def test_full_configure_covers_the_spec():
    seen = {(struct, member["name"]) for _, struct, member in CONFIGURE_MEMBERS}
    structs = {struct for struct, _ in seen}
    expected = {(struct, m["name"]) for struct in structs for m in objects()[struct]["members"]}
    assert seen == expected
    assert "ProcessImageAsyncTask" in structs and "PatternConfig" in structs


def test_full_configure_validates_through_create_and_as_a_structure():
    params = create_with(full_configure())
    assert validate_request(CREATE, params) == params
    assert validate_structure("ProcessImageAsyncTask", full_configure(), "ProcessImageConfigure") == FULL_CONFIGURE


def test_input_is_not_modified():
    params = create_with(full_configure())
    params["ProcessImageConfigure"]["EncodeConfig"]["Format"] = "jpeg"
    before = copy.deepcopy(params)
    result = validate_request(CREATE, params)
    assert params == before
    assert result["ProcessImageConfigure"]["EncodeConfig"]["Format"] == "JPEG"


# --- JSON types at every depth ------------------------------------------------------------------

WRONG_VALUES = {
    "int": ["7", 1.5, 1.0, True, [], {}],
    "float": ["0.5", True, [], {}],
    "string": [5, 0.5, False, [], {}],
    "object": ["x", 1, [], True],
    "list": ["x", 1, {}, True],
}


@pytest.mark.parametrize("path, struct, member", CONFIGURE_MEMBERS,
                         ids=[dotted(p) for p, _, _ in CONFIGURE_MEMBERS])
def test_wrong_type_at_every_member_names_its_path(path, struct, member):
    for wrong in WRONG_VALUES[member["type"]]:
        configure = full_configure()
        set_at(configure, path, wrong)
        error = refused(CREATE, create_with(configure))
        assert error.code == "InvalidParameter", (wrong, error.message)
        assert f"ProcessImageConfigure.{dotted(path)} must be" in error.message


@pytest.mark.parametrize("path, struct, member", CONFIGURE_MEMBERS,
                         ids=[dotted(p) for p, _, _ in CONFIGURE_MEMBERS])
def test_null_at_every_member_is_refused(path, struct, member):
    configure = full_configure()
    set_at(configure, path, None)
    error = refused(CREATE, create_with(configure))
    assert error.code == "InvalidParameter"
    assert error.message.startswith(f"ProcessImageConfigure.{dotted(path)} must not be null")


def test_null_list_element_and_null_request_member_are_refused():
    error = refused(DESCRIBE, {"Definitions": [10001, None]})
    assert (error.code, error.message.split(" ")[0]) == ("InvalidParameter", "Definitions.1")
    assert refused(CREATE, {"ProcessImageConfigure": None}).code == "InvalidParameter"


def test_request_and_structure_must_be_objects():
    assert refused(CREATE, [1, 2]).code == "InvalidParameter"
    with pytest.raises(ApiError) as caught:
        validate_structure("ProcessImageAsyncTask", "JPEG", "ProcessImageConfigure")
    assert caught.value.message == "ProcessImageConfigure must be an object; got a string."


# --- unknown and missing members ----------------------------------------------------------------

@pytest.mark.parametrize("path", [()] + STRUCT_PATHS + [("BeautyConfig", "BeautyEffectItems", 0)],
                         ids=lambda p: dotted(p) or "top")
def test_unknown_member_at_any_depth_names_its_path(path):
    configure = full_configure()
    get_at(configure, path)["Foo"] = 1
    error = refused(CREATE, create_with(configure))
    assert error.code == "UnknownParameter"
    assert error.message.startswith(f"{dotted(('ProcessImageConfigure',) + path + ('Foo',))} is not a parameter")


def test_unknown_top_level_parameter_and_wrong_case():
    assert refused(DELETE, {"Definition": 10001, "Foo": 1}).message.startswith("Foo is not a parameter")
    assert refused(DELETE, {"definition": 10001}).code == "UnknownParameter"


REQUIRED = [(path + (m["name"],), m["name"]) for path, _, member in CONFIGURE_MEMBERS
            if member["member"] in objects() and member["type"] == "object"
            for m in objects()[member["member"]]["members"] if m.get("required")]


@pytest.mark.parametrize("path, name", REQUIRED, ids=[dotted(p) for p, _ in REQUIRED])
def test_missing_required_member_at_any_depth(path, name):
    configure = full_configure()
    del get_at(configure, path[:-1])[name]
    error = refused(CREATE, create_with(configure))
    assert (error.code, error.message) == ("MissingParameter", f"ProcessImageConfigure.{dotted(path)} is required.")


def test_required_request_members_come_from_the_spec():
    assert refused(CREATE, {}).code == "MissingParameter"
    assert refused(MODIFY, {"Name": "x"}).message == "Definition is required."
    assert refused(DELETE, {}).message == "Definition is required."
    assert validate_request(DESCRIBE, {}) == {}
    assert validate_request(MODIFY, {"Definition": 10001}) == {"Definition": 10001}


# --- integers and numbers -----------------------------------------------------------------------

def test_int64_bounds():
    assert validate_request(DELETE, {"Definition": 2**63 - 1})["Definition"] == 2**63 - 1
    assert validate_request(DELETE, {"Definition": -(2**63)})["Definition"] == -(2**63)
    for beyond in (2**63, -(2**63) - 1, 10**40):
        error = refused(DELETE, {"Definition": beyond})
        assert error.code == "InvalidParameter" and "out of range" in error.message


def test_uint64_bounds_and_sign():
    assert validate_request(DESCRIBE, {"Offset": 2**64 - 1})["Offset"] == 2**64 - 1
    assert refused(DESCRIBE, {"Offset": 2**64}).code == "InvalidParameter"
    error = refused(DESCRIBE, {"Offset": -1})
    assert (error.code, error.message) == ("InvalidParameterValue.Offset", "Offset must be >= 0; got -1.")


def test_float_members_take_integers_but_not_booleans_or_non_finite_numbers():
    for accepted in (0, 1, 0.0, 1.0, 0.75):
        configure = create_with({"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": accepted}}})
        assert validate_request(CREATE, configure) == configure
    for wrong in (True, math.nan, math.inf, -math.inf):
        configure = create_with({"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": wrong}}})
        assert refused(CREATE, configure).code == "InvalidParameter"


# --- hostile nesting ----------------------------------------------------------------------------

def deep_junk(levels: int, kind: str):
    """``levels`` nested lists or dicts, built without recursion."""
    junk = 1
    for _ in range(levels):
        junk = [junk] if kind == "list" else {"A": junk}
    return junk


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("from_strings", [False, True])
def test_ten_thousand_levels_of_junk_get_a_short_clear_error(kind, from_strings):
    junk = deep_junk(10_000, kind)
    cases = [
        (CREATE, create_with({"EncodeConfig": {"Format": junk}}), "InvalidParameter",
         "ProcessImageConfigure.EncodeConfig.Format"),
        (CREATE, create_with({"EnhanceConfig": {"Junk": junk}}), "UnknownParameter",
         "ProcessImageConfigure.EnhanceConfig.Junk"),
        (CREATE, create_with({"EnhanceConfig": {"EnhanceConfig": junk}}), "UnknownParameter",
         "ProcessImageConfigure.EnhanceConfig.EnhanceConfig"),
        (DESCRIBE, {"Definitions": [1, junk]}, "InvalidParameter", "Definitions.1"),
        (DELETE, {"Definition": junk}, "InvalidParameter", "Definition"),
        (CREATE, junk, "InvalidParameter" if kind == "list" else "UnknownParameter", ""),
    ]
    for action, params, code, path in cases:
        error = refused(action, params, from_strings=from_strings)
        assert error.code == code
        assert error.message.startswith(path)
        assert len(error.message) < 200


# --- documented ranges and enums ----------------------------------------------------------------

# (path inside ProcessImageConfigure, accepted values, refused values, code)
RANGE_CASES = [
    (("EncodeConfig", "Format"), ["JPEG", "PNG", "BMP", "WebP"], ["JPG", "GIF", "", "webp2"],
     "InvalidParameterValue.Format"),
    (("EncodeConfig", "Quality"), [1, 100], [0, 101, -5], "InvalidParameterValue.Quality"),
    # SuperResolution ON would clash with AdvancedSuperResolution ON (see test_configure.py).
    (("EnhanceConfig", "SuperResolution", "Switch"), ["OFF"], ["on", "On", "YES", ""],
     "InvalidParameterValue.Switch"),
    (("EnhanceConfig", "Denoise", "Switch"), ["ON", "OFF"], ["on", "Off"], "InvalidParameterValue.Switch"),
    (("EnhanceConfig", "SuperResolution", "Type"), ["lq", "hq"], ["LQ", "mq"], "InvalidParameterValue.Type"),
    (("EnhanceConfig", "SuperResolution", "Size"), [2], [1, 3, 4], "InvalidParameterValue"),
    (("EnhanceConfig", "AdvancedSuperResolution", "Type"), ["standard", "super"], ["hq"],
     "InvalidParameterValue.Type"),
    (("EnhanceConfig", "AdvancedSuperResolution", "Mode"), ["aspect", "fixed", "percent"], ["scale"],
     "InvalidParameterValue"),
    (("EnhanceConfig", "AdvancedSuperResolution", "Percent"), [0.01, 1, 8], [0, -1, 8.01, 100],
     "InvalidParameterValue"),
    (("EnhanceConfig", "AdvancedSuperResolution", "Width"), [1, 4096], [0, 4097], "InvalidParameterValue.Width"),
    (("EnhanceConfig", "AdvancedSuperResolution", "Height"), [1, 4096], [0, 4097],
     "InvalidParameterValue.Height"),
    (("EnhanceConfig", "AdvancedSuperResolution", "LongSide"), [1, 4096], [0, 4097], "InvalidParameterValue"),
    (("EnhanceConfig", "AdvancedSuperResolution", "ShortSide"), [1, 4096], [0, 4097], "InvalidParameterValue"),
    (("EnhanceConfig", "Denoise", "Type"), ["weak", "strong"], ["normal"], "InvalidParameterValue.Type"),
    (("EnhanceConfig", "ImageQualityEnhance", "Type"), ["weak", "normal", "strong"], ["max"],
     "InvalidParameterValue.Type"),
    (("EnhanceConfig", "ColorEnhance", "Type"), ["weak", "normal", "strong"], ["Weak"],
     "InvalidParameterValue.Type"),
    (("EnhanceConfig", "SharpEnhance", "Intensity"), [0, 0.0, 1, 1.0], [-0.01, 1.01], "InvalidParameterValue"),
    (("EnhanceConfig", "FaceEnhance", "Intensity"), [0, 1.0], [-1, 2], "InvalidParameterValue"),
    (("EnhanceConfig", "LowLightEnhance", "Type"), ["normal"], ["strong"], "InvalidParameterValue.Type"),
    (("BeautyConfig", "BeautyEffectItems", 0, "Switch"), ["ON", "OFF"], ["off"], "InvalidParameterValue.Switch"),
    (("BeautyConfig", "BeautyEffectItems", 0, "Value"), [0, 100], [-1, 101], "InvalidParameterValue"),
    # Beauty Type names are the engine's to check; here only "not empty".
    (("BeautyConfig", "BeautyEffectItems", 0, "Type"), ["Whiten", "x" * 1000], [""], "InvalidParameterValue.Type"),
    (("BeautyConfig", "BeautyFilterItems", 0, "Type"), ["beauty.faceFeatureSoftlight"], [""],
     "InvalidParameterValue.Type"),
    (("BeautyConfig", "BeautyFilterItems", 0, "Value"), [0, 100], [101], "InvalidParameterValue"),
    (("BeautyConfig", "BeautyFilterItems", 0, "Switch"), ["ON"], ["true"], "InvalidParameterValue.Switch"),
    (("AiCutOutConfig", "Switch"), ["ON", "OFF"], ["1"], "InvalidParameterValue.Switch"),
    (("AiCutOutConfig", "Type"), ["foreground", "pattern"], ["background"], "InvalidParameterValue.Type"),
    (("AiCutOutConfig", "Model"), ["cutout-1.0-lite", "cutout-1.0-flash"], ["cutout-2.0"],
     "InvalidParameterValue"),
    (("AiCutOutConfig", "PatternConfig", "TransparencyThreshold"), [0, 126], [-1, 256], "InvalidParameterValue"),
    (("AiCutOutConfig", "PatternConfig", "OpaqueThreshold"), [31, 255], [256], "InvalidParameterValue"),
    (("AiCutOutConfig", "PatternConfig", "EdgeSamplingStep"), [1, 10], [0, 11], "InvalidParameterValue"),
    (("AiCutOutConfig", "PatternConfig", "EdgeExpansionStep"), [0, 50], [-1, 51], "InvalidParameterValue"),
    (("AiCutOutConfig", "PatternConfig", "EdgeBlendingIntensity"), [0, 0.5, 1], [1.5, -0.1],
     "InvalidParameterValue"),
]


@pytest.mark.parametrize("path, accepted, refused_values, code", RANGE_CASES,
                         ids=[dotted(case[0]) for case in RANGE_CASES])
def test_documented_ranges_and_enums(path, accepted, refused_values, code):
    for value in accepted:
        configure = full_configure()
        set_at(configure, path, value)
        assert get_at(validate_request(CREATE, create_with(configure))["ProcessImageConfigure"], path) == value
    for value in refused_values:
        configure = full_configure()
        set_at(configure, path, value)
        error = refused(CREATE, create_with(configure))
        assert error.code == code, (value, error.message)
        assert error.message.startswith(f"ProcessImageConfigure.{dotted(path)} must be ")


def test_range_messages_state_the_allowed_values():
    configure = full_configure()
    set_at(configure, ("EncodeConfig", "Quality"), 0)
    assert refused(CREATE, create_with(configure)).message == (
        "ProcessImageConfigure.EncodeConfig.Quality must be from 1 to 100; got 0.")
    set_at(configure, ("EncodeConfig", "Quality"), 50)
    set_at(configure, ("EncodeConfig", "Format"), "GIF")
    assert refused(CREATE, create_with(configure)).message == (
        "ProcessImageConfigure.EncodeConfig.Format must be one of JPEG, PNG, BMP, WebP (any case); got 'GIF'.")


@pytest.mark.parametrize("given, normalised", [("jpeg", "JPEG"), ("Png", "PNG"), ("bmp", "BMP"),
                                               ("webp", "WebP"), ("WEBP", "WebP"), ("WebP", "WebP")])
def test_format_is_case_insensitive_and_normalised(given, normalised):
    result = validate_request(CREATE, create_with({"EncodeConfig": {"Format": given}}))
    assert result["ProcessImageConfigure"]["EncodeConfig"]["Format"] == normalised


@pytest.mark.parametrize("action, extra", [(CREATE, {"ProcessImageConfigure": {}}), (MODIFY, {"Definition": 10001})])
@pytest.mark.parametrize("member, limit", [("Name", 64), ("Comment", 256)])
@pytest.mark.parametrize("char", ["a", "图", "😀", "\U0001F469\u200D"])
def test_name_and_comment_lengths_count_characters_not_bytes(action, extra, member, limit, char):
    text = (char * limit)[:limit]
    assert len(text.encode("utf-8")) >= limit
    assert validate_request(action, {**extra, member: text})[member] == text
    error = refused(action, {**extra, member: text + char[0]})
    assert error.code == f"InvalidParameterValue.{member}"
    assert error.message == f"{member} must be at most {limit} characters long; got {limit + 1} characters."


def test_describe_paging_and_filter_limits():
    assert validate_request(DESCRIBE, {"Definitions": list(range(100)), "Offset": 0, "Limit": 100})
    assert refused(DESCRIBE, {"Definitions": list(range(101))}).code == "InvalidParameterValue.Definitions"
    assert refused(DESCRIBE, {"Limit": 0}).code == "InvalidParameterValue.Limit"
    assert refused(DESCRIBE, {"Limit": 101}).code == "InvalidParameterValue.Limit"
    assert refused(DESCRIBE, {"Definitions": ["1"]}).code == "InvalidParameter"


@pytest.mark.parametrize("action", TEMPLATE_ACTIONS)
def test_sub_app_id_must_be_positive(action):
    base = {"Definition": 10001} if action in (MODIFY, DELETE) else {}
    if action == CREATE:
        base = {"ProcessImageConfigure": {}}
    assert validate_request(action, {**base, "SubAppId": 1})["SubAppId"] == 1
    for wrong in (0, -3):
        error = refused(action, {**base, "SubAppId": wrong})
        assert error.code == "InvalidParameterValue.SubAppId"


# --- form / GET requests: values arrive as strings ----------------------------------------------

def test_from_strings_coerces_every_member_by_its_spec_type():
    params = {"Definition": "10001", "SubAppId": "5", "Name": "n", "ProcessImageConfigure": stringify(FULL_CONFIGURE)}
    result = validate_request(MODIFY, params, from_strings=True)
    assert result == {"Definition": 10001, "SubAppId": 5, "Name": "n", "ProcessImageConfigure": FULL_CONFIGURE}
    intensity = result["ProcessImageConfigure"]["EnhanceConfig"]["SharpEnhance"]["Intensity"]
    assert type(intensity) is float
    described = validate_request(DESCRIBE, {"Definitions": ["7", "-8"], "Offset": "0", "Limit": "+20"},
                                 from_strings=True)
    assert described == {"Definitions": [7, -8], "Offset": 0, "Limit": 20}


def test_from_strings_keeps_strings_strings():
    result = validate_request(CREATE, {"Name": "123", "ProcessImageConfigure": {}}, from_strings=True)
    assert result["Name"] == "123"


@pytest.mark.parametrize("text", ["", " 5", "5 ", "1_000", "0x10", "5.0", "1e3", "abc", "٣", "9" * 41])
def test_from_strings_refuses_integers_that_do_not_parse(text):
    error = refused(DELETE, {"Definition": text}, from_strings=True)
    assert error.code == "InvalidParameter"
    assert error.message.startswith("Definition must be a 64-bit integer; got ")
    assert "does not parse" in error.message


def test_from_strings_integers_beyond_64_bits_are_out_of_range():
    assert validate_request(DELETE, {"Definition": str(2**63 - 1)}, from_strings=True)["Definition"] == 2**63 - 1
    for text in (str(2**63), "9" * 40):
        error = refused(DELETE, {"Definition": text}, from_strings=True)
        assert error.code == "InvalidParameter" and "out of range" in error.message


@pytest.mark.parametrize("text, value", [("0.5", 0.5), ("1", 1.0), (".25", 0.25), ("1e-1", 0.1), ("+0.0", 0.0)])
def test_from_strings_parses_numbers(text, value):
    params = create_with({"EnhanceConfig": {"FaceEnhance": {"Switch": "ON", "Intensity": text}}})
    result = validate_request(CREATE, params, from_strings=True)
    assert result["ProcessImageConfigure"]["EnhanceConfig"]["FaceEnhance"]["Intensity"] == value


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "0,5", "", "1e999"])
def test_from_strings_refuses_numbers_that_do_not_parse_or_are_not_finite(text):
    params = create_with({"EnhanceConfig": {"FaceEnhance": {"Switch": "ON", "Intensity": text}}})
    error = refused(CREATE, params, from_strings=True)
    assert error.code == "InvalidParameter"
    assert error.message.startswith("ProcessImageConfigure.EnhanceConfig.FaceEnhance.Intensity must be")


def test_from_strings_still_applies_ranges_and_structure():
    error = refused(CREATE, create_with({"EncodeConfig": {"Quality": "101"}}), from_strings=True)
    assert error.code == "InvalidParameterValue.Quality"
    assert refused(CREATE, {"ProcessImageConfigure": "x"}, from_strings=True).code == "InvalidParameter"
    assert refused(DESCRIBE, {"Offset": "-1"}, from_strings=True).code == "InvalidParameterValue.Offset"


def test_strings_are_not_coerced_without_from_strings():
    assert refused(DELETE, {"Definition": "10001"}).code == "InvalidParameter"


def test_unknown_action():
    error = refused("RunEverything", {})
    assert error.code == "InvalidAction"
