"""The four template actions end to end: the official SDK against a real ``vodimg serve`` (SQLite
and PostgreSQL), every parameter, the spec's examples, isolation between accounts, restarts and
bad input."""

from __future__ import annotations

import json
import re

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.vod.v20180717 import models

from vodimg.spec import api_spec

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
DESCRIBE = "DescribeProcessImageAsyncTemplates"
CREATE = "CreateProcessImageAsyncTemplate"
MODIFY = "ModifyProcessImageAsyncTemplate"
DELETE = "DeleteProcessImageAsyncTemplate"
PRESET = 10  # a shipped preset (vodimg/domain/presets.py)

FULL_CONFIGURE = {
    "EncodeConfig": {"Format": "PNG", "Quality": 90},
    "EnhanceConfig": {
        "SuperResolution": {"Switch": "OFF", "Type": "hq", "Size": 2},
        "AdvancedSuperResolution": {"Switch": "ON", "Type": "standard", "Mode": "aspect", "Percent": 1.5,
                                    "Width": 1920, "Height": 1080, "LongSide": 2000, "ShortSide": 1000},
        "Denoise": {"Switch": "ON", "Type": "weak"},
        "ImageQualityEnhance": {"Switch": "ON", "Type": "normal"},
        "ColorEnhance": {"Switch": "ON", "Type": "strong"},
        "SharpEnhance": {"Switch": "ON", "Intensity": 0.25},
        "FaceEnhance": {"Switch": "ON", "Intensity": 0.75},
        "LowLightEnhance": {"Switch": "ON", "Type": "normal"},
    },
    "BeautyConfig": {
        "BeautyEffectItems": [{"Switch": "ON", "Type": "Whiten", "Value": 90, "ResourcePath": "a/b", "ExtInfo": "{}"}],
        "BeautyFilterItems": [{"Switch": "ON", "Type": "Dongjing", "Value": 30}],
    },
    "AiCutOutConfig": {
        "Switch": "ON", "Type": "pattern", "Model": "cutout-1.0-lite",
        "PatternConfig": {"TransparencyThreshold": 20, "OpaqueThreshold": 200, "EdgeSamplingStep": 3,
                          "EdgeExpansionStep": 4, "EdgeBlendingIntensity": 0.5},
    },
}
SHARPEN = {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 0.5}}}


def model(name: str, params: dict):
    instance = getattr(models, f"{name}Request")()
    instance.from_json_string(json.dumps(params))
    return instance


def as_dict(sdk_model) -> dict:
    """A response model as plain JSON, without the members the model has but the answer left out."""
    return _without_nulls(json.loads(sdk_model.to_json_string()))


def _without_nulls(value):
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def example_body(action: str) -> dict:
    """The JSON body of the spec's first example for ``action``."""
    text = api_spec()["examples"][action][0]["input"]
    return json.loads(text.split("\n\n", 1)[1])


def sdk_error(call) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as caught:
        call()
    return caught.value


def create(tenant, configure=SHARPEN, **params) -> int:
    return tenant.call(CREATE, {"ProcessImageConfigure": configure, **params})["Definition"]


def describe_one(tenant, definition: int, **params) -> dict:
    answer = tenant.call(DESCRIBE, {"Definitions": [definition], **params})
    assert answer["TotalCount"] == 1, answer
    return answer["ProcessImageAsyncTemplateSet"][0]


# -- every action, every parameter, through the generated VodClient ----------------------------

def test_create_describe_modify_delete_with_every_parameter(tenant):
    client = tenant.vod()
    created = client.CreateProcessImageAsyncTemplate(model(CREATE, {
        "SubAppId": tenant.sub_app_id, "Name": "full", "Comment": "every capability",
        "ProcessImageConfigure": FULL_CONFIGURE}))
    definition = created.Definition
    assert definition >= 10000
    listed = client.DescribeProcessImageAsyncTemplates(model(DESCRIBE, {
        "SubAppId": tenant.sub_app_id, "Definitions": [definition], "Offset": 0, "Limit": 100}))
    assert listed.TotalCount == 1
    item = as_dict(listed.ProcessImageAsyncTemplateSet[0])
    assert (item["Definition"], item["Type"], item["Name"], item["Comment"]) == (definition, "Custom", "full", "every capability")
    assert item["ProcessImageConfigure"] == FULL_CONFIGURE
    assert ISO_UTC.match(item["CreateTime"]) and ISO_UTC.match(item["UpdateTime"])

    client.ModifyProcessImageAsyncTemplate(model(MODIFY, {
        "SubAppId": tenant.sub_app_id, "Definition": definition, "Name": "renamed", "Comment": "",
        "ProcessImageConfigure": {"EncodeConfig": {"Format": "JPEG"},
                                  "EnhanceConfig": {"Denoise": {"Switch": "OFF"}}}}))
    item = describe_one(tenant, definition)
    assert (item["Name"], item["Comment"]) == ("renamed", "")
    configure = item["ProcessImageConfigure"]
    assert configure["EncodeConfig"] == {"Format": "JPEG"}  # a capability given replaces it whole
    assert configure["EnhanceConfig"]["Denoise"] == {"Switch": "OFF"}
    assert configure["EnhanceConfig"]["SharpEnhance"] == FULL_CONFIGURE["EnhanceConfig"]["SharpEnhance"]
    assert configure["AiCutOutConfig"] == FULL_CONFIGURE["AiCutOutConfig"]  # left out: kept

    client.DeleteProcessImageAsyncTemplate(model(DELETE, {"SubAppId": tenant.sub_app_id, "Definition": definition}))
    gone = client.DescribeProcessImageAsyncTemplates(model(DESCRIBE, {"Definitions": [definition]}))
    assert gone.TotalCount == 0


def test_modify_keeps_name_and_comment_left_out(tenant):
    definition = create(tenant, Name="keep", Comment="me")
    tenant.call(MODIFY, {"Definition": definition, "ProcessImageConfigure": {"EncodeConfig": {"Quality": 50}}})
    item = describe_one(tenant, definition)
    assert (item["Name"], item["Comment"]) == ("keep", "me")
    assert item["ProcessImageConfigure"] == {**SHARPEN, "EncodeConfig": {"Quality": 50}}
    assert item["UpdateTime"] >= item["CreateTime"]


def test_describe_lists_presets_and_customs_in_order_with_paging(tenant):
    everything = tenant.call(DESCRIBE, {"Limit": 100})
    presets = [item for item in everything["ProcessImageAsyncTemplateSet"] if item["Type"] == "Preset"]
    assert presets and all(item["Definition"] < 10000 for item in presets)
    mine = [create(tenant, Name=f"t{index}") for index in range(3)]
    total = everything["TotalCount"] + 3
    listed = tenant.call(DESCRIBE, {"Limit": 100})
    definitions = [item["Definition"] for item in listed["ProcessImageAsyncTemplateSet"]]
    assert listed["TotalCount"] == total and definitions == sorted(definitions) and definitions[-3:] == mine
    default_page = tenant.call(DESCRIBE, {})
    assert len(default_page["ProcessImageAsyncTemplateSet"]) == min(10, total)
    page = tenant.call(DESCRIBE, {"Offset": total - 2, "Limit": 5})
    assert page["TotalCount"] == total
    assert [item["Definition"] for item in page["ProcessImageAsyncTemplateSet"]] == mine[1:]
    filtered = tenant.call(DESCRIBE, {"Definitions": [mine[2], PRESET, 999999]})
    assert [item["Definition"] for item in filtered["ProcessImageAsyncTemplateSet"]] == [PRESET, mine[2]]


# -- the spec's examples ---------------------------------------------------------------------

def test_spec_examples_for_the_four_actions(tenant):
    created = tenant.vod().CreateProcessImageAsyncTemplate(model(CREATE, example_body(CREATE)))
    assert created.Definition >= 10000
    created_item = describe_one(tenant, created.Definition)
    assert created_item["ProcessImageConfigure"] == example_body(CREATE)["ProcessImageConfigure"]
    assert (created_item["Name"], created_item["Comment"], created_item["Type"]) == ("", "", "Custom")

    # The Modify example edits preset 7 (presets are read-only): edit a custom template instead.
    definition = create(tenant)
    modify = {**example_body(MODIFY), "Definition": definition, "SubAppId": tenant.sub_app_id}
    tenant.vod().ModifyProcessImageAsyncTemplate(model(MODIFY, modify))
    describe = {**example_body(DESCRIBE), "Definitions": [definition], "SubAppId": tenant.sub_app_id}
    described = tenant.vod().DescribeProcessImageAsyncTemplates(model(DESCRIBE, describe))
    assert described.TotalCount == 1
    item = as_dict(described.ProcessImageAsyncTemplateSet[0])
    assert (item["Name"], item["Comment"], item["Type"]) == ("test3", "testcomment", "Custom")
    assert item["ProcessImageConfigure"] == example_body(MODIFY)["ProcessImageConfigure"]

    # Applied to the Create example's template, the Modify example would turn SuperResolution ON
    # beside its AdvancedSuperResolution: refused after the merge, the template unchanged.
    on_created = {**modify, "Definition": created.Definition}
    error = sdk_error(lambda: tenant.vod().ModifyProcessImageAsyncTemplate(model(MODIFY, on_created)))
    assert error.code.startswith("InvalidParameterValue") and "SuperResolution" in error.message
    assert describe_one(tenant, created.Definition) == created_item

    delete = {**example_body(DELETE), "Definition": definition, "SubAppId": tenant.sub_app_id}
    tenant.vod().DeleteProcessImageAsyncTemplate(model(DELETE, delete))
    assert tenant.call(DESCRIBE, {"Definitions": [definition]})["TotalCount"] == 0


# -- isolation, presets, deleted templates ----------------------------------------------------

def test_another_accounts_sub_app_id_is_unauthorized(e2e_server, tenant):
    other = e2e_server.new_tenant()
    theirs = create(other)
    for action, params in ((DESCRIBE, {}), (CREATE, {"ProcessImageConfigure": SHARPEN}),
                           (MODIFY, {"Definition": theirs, "Name": "x"}), (DELETE, {"Definition": theirs})):
        error = sdk_error(lambda: tenant.call(action, {**params, "SubAppId": other.sub_app_id}))
        assert error.code == "UnauthorizedOperation", (action, error)
    # Not even visible by Definition from our own application.
    assert tenant.call(DESCRIBE, {"Definitions": [theirs]})["TotalCount"] == 0
    for action in (MODIFY, DELETE):
        error = sdk_error(lambda: tenant.call(action, {"Definition": theirs, "Name": "x"} if action == MODIFY
                                              else {"Definition": theirs}))
        assert error.code == "ResourceNotFound.TemplateNotExist"
    assert describe_one(other, theirs)["Name"] == ""  # untouched


def test_second_application_of_the_same_account(tenant):
    second = tenant.add_application()
    definition = create(tenant, SubAppId=second, Name="in second")
    assert describe_one(tenant, definition, SubAppId=second)["Name"] == "in second"
    assert tenant.call(DESCRIBE, {"Definitions": [definition]})["TotalCount"] == 0  # default app


def test_presets_are_read_only(tenant):
    assert describe_one(tenant, PRESET)["Type"] == "Preset"
    assert sdk_error(lambda: tenant.call(MODIFY, {"Definition": PRESET, "Name": "x"})).code == "UnauthorizedOperation"
    assert sdk_error(lambda: tenant.call(DELETE, {"Definition": PRESET})).code == "UnauthorizedOperation"


def test_deleted_template_is_gone_and_its_definition_never_reused(tenant):
    definition = create(tenant)
    tenant.call(DELETE, {"Definition": definition})
    for action, params in ((MODIFY, {"Definition": definition, "Name": "x"}), (DELETE, {"Definition": definition})):
        assert sdk_error(lambda: tenant.call(action, params)).code == "ResourceNotFound.TemplateNotExist"
    assert create(tenant) > definition


def test_quota_of_50_templates_per_application(tenant):
    for _ in range(50):
        create(tenant)
    assert sdk_error(lambda: create(tenant)).code == "LimitExceeded"


# -- bad input through the SDK -----------------------------------------------------------------

@pytest.mark.parametrize("params,code,path", [
    ({"ProcessImageConfigure": {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": "high"}}}},
     "InvalidParameter", "ProcessImageConfigure.EnhanceConfig.SharpEnhance.Intensity"),
    ({"ProcessImageConfigure": {"BeautyConfig": {"BeautyEffectItems": [{"Switch": "ON", "Value": "9"}]}}},
     "InvalidParameter", "ProcessImageConfigure.BeautyConfig.BeautyEffectItems.0.Value"),
    ({"ProcessImageConfigure": {"EncodeConfig": ["JPEG"]}}, "InvalidParameter", "ProcessImageConfigure.EncodeConfig"),
    ({"ProcessImageConfigure": {"EnhanceConfig": {"Denoise": {"Switch": "ON", "Level": 3}}}},
     "UnknownParameter", "ProcessImageConfigure.EnhanceConfig.Denoise.Level"),
    ({"ProcessImageConfigure": SHARPEN, "Extra": 1}, "UnknownParameter", "Extra"),
    ({"ProcessImageConfigure": SHARPEN, "Name": "n" * 65}, "InvalidParameterValue.Name", "Name"),
    ({"ProcessImageConfigure": SHARPEN, "Comment": "c" * 257}, "InvalidParameterValue.Comment", "Comment"),
    ({"ProcessImageConfigure": SHARPEN, "Name": None}, "InvalidParameter", "Name"),
    ({"Name": "no configure"}, "MissingParameter", "ProcessImageConfigure"),
    ({"ProcessImageConfigure": {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 1.5}}}},
     "InvalidParameterValue", "ProcessImageConfigure.EnhanceConfig.SharpEnhance.Intensity"),
])
def test_bad_create_input(tenant, params, code, path):
    error = sdk_error(lambda: tenant.call(CREATE, params))
    assert error.code.split(".")[0] == code.split(".")[0] and error.code.startswith(code), error
    assert path in error.message


@pytest.mark.parametrize("name", ["😀" * 64, "图片异步处理模板" * 8, "é" * 64])
def test_64_characters_of_any_script_are_a_valid_name(tenant, name):
    definition = create(tenant, Name=name, Comment="评" * 256)
    item = describe_one(tenant, definition)
    assert item["Name"] == name and item["Comment"] == "评" * 256


def test_bad_describe_and_delete_input(tenant):
    assert sdk_error(lambda: tenant.call(DESCRIBE, {"Limit": 101})).code.startswith("InvalidParameterValue")
    assert sdk_error(lambda: tenant.call(DESCRIBE, {"Definitions": [1] * 101})).code.startswith("InvalidParameterValue")
    assert sdk_error(lambda: tenant.call(DESCRIBE, {"Definitions": "10"})).code == "InvalidParameter"
    assert sdk_error(lambda: tenant.call(DELETE, {})).code == "MissingParameter"
    assert sdk_error(lambda: tenant.call(DELETE, {"Definition": True})).code == "InvalidParameter"


def test_form_signatures_reach_the_same_validation(tenant):
    # HmacSHA256 over GET sends every value as a string: numbers are coerced, junk is refused.
    definition = create(tenant, Name="form")
    answer = tenant.call(DESCRIBE, {"Definitions": [definition]}, sign_method="HmacSHA256", req_method="GET")
    assert answer["ProcessImageAsyncTemplateSet"][0]["Name"] == "form"
    error = sdk_error(lambda: tenant.call(DESCRIBE, {"Limit": "many"}, sign_method="HmacSHA1"))
    assert error.code == "InvalidParameter" and "Limit" in error.message


# -- persistence --------------------------------------------------------------------------------

@pytest.mark.slow
def test_templates_survive_a_restart(e2e_server, tenant):
    definition = create(tenant, configure=FULL_CONFIGURE, Name="durable")
    before = describe_one(tenant, definition)
    e2e_server.stop()
    e2e_server.start()
    assert describe_one(tenant, definition) == before
    assert create(tenant) > definition


def test_a_change_through_one_api_process_is_seen_through_the_other_at_once(e2e_server, tenant):
    """Each API process caches an application's templates; a change made through another process
    (bumping the application's templates_version) must never be answered from a stale cache."""
    cluster = getattr(e2e_server, "cluster", None)
    if cluster is None:
        pytest.skip("needs two API processes (the cluster parameter)")
    other = cluster.on(tenant, 0)  # the first API process; ``tenant`` talks to the second

    def names_on(who) -> dict:
        answer = who.call(DESCRIBE, {"SubAppId": tenant.sub_app_id, "Limit": 100})
        return {item["Definition"]: item["Name"] for item in answer["ProcessImageAsyncTemplateSet"]
                if item["Type"] == "Custom"}

    definition = create(tenant, Name="before")
    assert names_on(other)[definition] == "before"  # fills the other process's cache
    tenant.call("ModifyProcessImageAsyncTemplate", {"SubAppId": tenant.sub_app_id, "Definition": definition,
                                                    "Name": "after"})
    assert names_on(other)[definition] == "after"
    other.call("DeleteProcessImageAsyncTemplate", {"SubAppId": tenant.sub_app_id, "Definition": definition})
    assert definition not in names_on(tenant)
