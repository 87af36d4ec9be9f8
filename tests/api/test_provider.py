"""VodProvider with the real account and template services on SQLite: validation before the
domain, SubAppId resolution, response shapes per the spec, the spec's examples end to end."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from vodimg.api.provider import VodProvider
from vodimg.domain.accounts import AccountService
from vodimg.domain.templates import TemplateService
from vodimg.errors import ApiError
from vodimg.spec import api_spec, vod_actions
from vodimg.storage.db import Database, sqlite_url
from vodimg.validation import validate_structure
from tests.validation.specdata import FULL_CONFIGURE, TEMPLATE_ACTIONS, example_bodies, full_configure, stringify

CREATE = "CreateProcessImageAsyncTemplate"
MODIFY = "ModifyProcessImageAsyncTemplate"
DESCRIBE = "DescribeProcessImageAsyncTemplates"
DELETE = "DeleteProcessImageAsyncTemplate"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def database(tmp_path):
    db = Database(sqlite_url(tmp_path))
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def accounts(database):
    return AccountService(database)


@pytest.fixture
def provider(database, accounts):
    return VodProvider(accounts, TemplateService(database))


@pytest.fixture
def account(accounts):
    return accounts.create_account()


def refused(provider, action, app_id, params, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        provider.call(action, app_id, params, **kwargs)
    return caught.value


def describe_one(provider, app_id, definition) -> dict:
    result = provider.call(DESCRIBE, app_id, {"Definitions": [definition]})
    assert result["TotalCount"] == 1
    return result["ProcessImageAsyncTemplateSet"][0]


def response_members(action: str) -> tuple[set, set]:
    """(all, required) member names of the spec's <Action>Response, without RequestId."""
    members = [m for m in api_spec()["objects"][f"{action}Response"]["members"] if m["name"] != "RequestId"]
    return {m["name"] for m in members}, {m["name"] for m in members if m.get("output_required")}


def assert_shaped_like_the_spec(action: str, result: dict) -> None:
    every, required = response_members(action)
    assert required <= set(result) <= every


TASK_ACTIONS = ("ProcessImageAsync", "DescribeTaskDetail", "DescribeTasks")


def test_actions_include_the_template_and_task_actions_all_from_the_spec(provider):
    assert set(TEMPLATE_ACTIONS) | set(TASK_ACTIONS) <= provider.actions <= set(api_spec()["actions"])


def test_create_then_describe_round_trip(provider, account):
    app = account["AppId"]
    created = provider.call(CREATE, app, {"ProcessImageConfigure": full_configure()})
    assert_shaped_like_the_spec(CREATE, created)
    assert created["Definition"] >= 10000
    item = describe_one(provider, app, created["Definition"])
    item_members = {m["name"] for m in api_spec()["objects"]["ProcessImageAsyncTemplateItem"]["members"]}
    assert set(item) == item_members
    assert (item["Type"], item["Name"], item["Comment"]) == ("Custom", "", "")
    assert item["ProcessImageConfigure"] == FULL_CONFIGURE
    assert ISO_UTC.fullmatch(item["CreateTime"]) and ISO_UTC.fullmatch(item["UpdateTime"])


def test_values_are_stored_normalised(provider, account):
    app = account["AppId"]
    params = {"Name": "图" * 64, "ProcessImageConfigure": {"EncodeConfig": {"Format": "webp", "Quality": 70}}}
    definition = provider.call(CREATE, app, params)["Definition"]
    item = describe_one(provider, app, definition)
    assert item["Name"] == "图" * 64
    assert item["ProcessImageConfigure"] == {"EncodeConfig": {"Format": "WebP", "Quality": 70}}


def test_form_requests_are_coerced_before_the_domain(provider, account):
    app = account["AppId"]
    params = {"SubAppId": str(account["SubAppId"]), "Name": "form",
              "ProcessImageConfigure": stringify(FULL_CONFIGURE)}
    definition = provider.call(CREATE, app, params, from_strings=True)["Definition"]
    described = provider.call(DESCRIBE, app, {"Definitions": [str(definition)], "Limit": "5"}, from_strings=True)
    assert described["ProcessImageAsyncTemplateSet"][0]["ProcessImageConfigure"] == FULL_CONFIGURE


def test_invalid_input_never_reaches_the_domain(provider, account):
    app = account["AppId"]
    before = provider.call(DESCRIBE, app, {})["TotalCount"]
    bad = full_configure()
    bad["EncodeConfig"]["Quality"] = 0
    assert refused(provider, CREATE, app, {"ProcessImageConfigure": bad}).code == "InvalidParameterValue.Quality"
    assert refused(provider, CREATE, app, {"Name": "x" * 65, "ProcessImageConfigure": {}}).code == (
        "InvalidParameterValue.Name")
    assert refused(provider, CREATE, app, {"Name": "x"}).code == "MissingParameter"
    assert provider.call(DESCRIBE, app, {})["TotalCount"] == before


def test_sub_app_id_is_resolved_per_account(provider, accounts, account):
    app = account["AppId"]
    other = accounts.create_account()
    second_app = accounts.create_application(app, "second")["SubAppId"]
    in_default = provider.call(CREATE, app, {"ProcessImageConfigure": {}})["Definition"]
    in_second = provider.call(CREATE, app, {"SubAppId": second_app, "ProcessImageConfigure": {}})["Definition"]

    explicit_default = provider.call(DESCRIBE, app, {"SubAppId": account["SubAppId"], "Definitions": [in_default]})
    assert explicit_default["TotalCount"] == 1
    assert provider.call(DESCRIBE, app, {"Definitions": [in_second]})["TotalCount"] == 0
    assert provider.call(DESCRIBE, app, {"SubAppId": second_app, "Definitions": [in_second]})["TotalCount"] == 1

    for action, params in ((DESCRIBE, {}), (DELETE, {"Definition": in_default}),
                           (MODIFY, {"Definition": in_default, "Name": "x"}),
                           (CREATE, {"ProcessImageConfigure": {}})):
        error = refused(provider, action, other["AppId"], {**params, "SubAppId": account["SubAppId"]})
        assert error.code == "UnauthorizedOperation"
    # The other account's own default application does not see this account's templates.
    assert refused(provider, DELETE, other["AppId"], {"Definition": in_default}).code == (
        "ResourceNotFound.TemplateNotExist")


def test_modify_merges_and_rechecks_the_whole_configure(provider, account):
    app = account["AppId"]
    configure = {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": "hq", "Size": 2}},
                 "EncodeConfig": {"Format": "PNG"}}
    definition = provider.call(CREATE, app, {"Name": "a", "Comment": "c", "ProcessImageConfigure": configure})[
        "Definition"]

    result = provider.call(MODIFY, app, {"Definition": definition, "Name": "b"})
    assert result == {}
    assert_shaped_like_the_spec(MODIFY, result)
    item = describe_one(provider, app, definition)
    assert (item["Name"], item["Comment"], item["ProcessImageConfigure"]) == ("b", "c", configure)

    clash = {"EnhanceConfig": {"AdvancedSuperResolution": {"Switch": "ON"}}}
    error = refused(provider, MODIFY, app, {"Definition": definition, "ProcessImageConfigure": clash})
    assert error.code == "InvalidParameterValue" and "cannot both be ON" in error.message
    assert describe_one(provider, app, definition)["ProcessImageConfigure"] == configure

    switch = {"EnhanceConfig": {"SuperResolution": {"Switch": "OFF"}, "AdvancedSuperResolution": {"Switch": "ON"}}}
    provider.call(MODIFY, app, {"Definition": definition, "ProcessImageConfigure": switch})
    merged = describe_one(provider, app, definition)["ProcessImageConfigure"]
    assert merged == {"EnhanceConfig": switch["EnhanceConfig"], "EncodeConfig": {"Format": "PNG"}}


def test_delete_and_missing_templates(provider, account):
    app = account["AppId"]
    definition = provider.call(CREATE, app, {"ProcessImageConfigure": {}})["Definition"]
    result = provider.call(DELETE, app, {"Definition": definition})
    assert result == {}
    assert_shaped_like_the_spec(DELETE, result)
    for action, params in ((DELETE, {"Definition": definition}), (MODIFY, {"Definition": definition, "Name": "x"})):
        assert refused(provider, action, app, params).code == "ResourceNotFound.TemplateNotExist"
    assert refused(provider, DELETE, app, {"Definition": 10}).code == "UnauthorizedOperation"


def test_describe_paging_defaults_and_filter(provider, account):
    app = account["AppId"]
    created = [provider.call(CREATE, app, {"Name": f"t{i}", "ProcessImageConfigure": {}})["Definition"]
               for i in range(12)]
    everything = provider.call(DESCRIBE, app, {})
    assert_shaped_like_the_spec(DESCRIBE, everything)
    total = everything["TotalCount"]
    assert total >= 12 and len(everything["ProcessImageAsyncTemplateSet"]) == 10  # default Limit 10
    definitions = [item["Definition"] for item in everything["ProcessImageAsyncTemplateSet"]]
    assert definitions == sorted(definitions)
    last = provider.call(DESCRIBE, app, {"Offset": total - 1, "Limit": 100})
    assert [item["Definition"] for item in last["ProcessImageAsyncTemplateSet"]] == [created[-1]]
    assert provider.call(DESCRIBE, app, {"Definitions": []})["TotalCount"] == total  # empty: no filter
    filtered = provider.call(DESCRIBE, app, {"Definitions": [created[3], created[1], 999999]})
    assert filtered["TotalCount"] == 2
    assert [item["Name"] for item in filtered["ProcessImageAsyncTemplateSet"]] == ["t1", "t3"]
    assert refused(provider, DESCRIBE, app, {"Limit": 101}).code == "InvalidParameterValue.Limit"


def test_the_spec_examples_end_to_end(provider, account):
    """The examples' bodies, with their SubAppId/Definition swapped for this account's own."""
    app, own = account["AppId"], account["SubAppId"]
    create = example_bodies(CREATE)[0]
    definition = provider.call(CREATE, app, create)["Definition"]
    assert describe_one(provider, app, definition)["ProcessImageConfigure"] == create["ProcessImageConfigure"]

    modify = example_bodies(MODIFY)[0]
    assert refused(provider, MODIFY, app, modify).code == "UnauthorizedOperation"  # SubAppId 221073
    assert refused(provider, MODIFY, app, {**modify, "SubAppId": own}).code == "UnauthorizedOperation"  # preset 7
    # On the Create example's template the merge would leave SuperResolution (the Modify example)
    # and AdvancedSuperResolution (the Create example) both ON: refused, nothing changed.
    error = refused(provider, MODIFY, app, {**modify, "SubAppId": own, "Definition": definition})
    assert error.code == "InvalidParameterValue" and "cannot both be ON" in error.message
    assert describe_one(provider, app, definition)["ProcessImageConfigure"] == create["ProcessImageConfigure"]
    empty = provider.call(CREATE, app, {"ProcessImageConfigure": {}})["Definition"]
    provider.call(MODIFY, app, {**modify, "SubAppId": own, "Definition": empty})
    item = describe_one(provider, app, empty)
    assert (item["Name"], item["Comment"]) == ("test3", "testcomment")
    assert item["ProcessImageConfigure"] == modify["ProcessImageConfigure"]

    describe = example_bodies(DESCRIBE)[0]
    assert provider.call(DESCRIBE, app, {**describe, "SubAppId": own})["TotalCount"] == 0  # no preset 7

    delete = example_bodies(DELETE)[0]
    assert refused(provider, DELETE, app, {**delete, "SubAppId": own}).code == "UnauthorizedOperation"  # preset 4
    provider.call(DELETE, app, {**delete, "SubAppId": own, "Definition": definition})


def test_unimplemented_and_unknown_actions(provider, account):
    # A real VOD action that this service does not implement is named as such ...
    for name in ("DescribeStorageData", "CreateClass"):
        error = refused(provider, name, account["AppId"], {})
        assert error.code == "InvalidAction"
        assert error.message == f"The action {name!r} is a VOD action that this service does not support."
    # ... a name VOD does not have at all does not exist.
    for name in ("NoSuchAction", "DescribeInstances", "describestoragedata"):
        error = refused(provider, name, account["AppId"], {})
        assert (error.code, error.message) == ("InvalidAction", f"The action {name!r} does not exist.")


def test_vod_action_list_is_tccli_api_json():
    # vodimg/spec/vod-actions.json is generated from the official CLI's spec (scripts/gen_vod_actions.py)
    api = json.loads(resources.files("tccli").joinpath("services/vod/v20180717/api.json").read_text("utf-8"))
    assert vod_actions() == frozenset(api["actions"])
    assert VodProvider.actions <= vod_actions()


def test_every_preset_passes_the_validator(provider, account):
    presets = [item for item in provider.call(DESCRIBE, account["AppId"], {"Limit": 100})["ProcessImageAsyncTemplateSet"]
               if item["Type"] == "Preset"]
    assert presets
    for item in presets:
        validate_structure("ProcessImageAsyncTask", item["ProcessImageConfigure"], "ProcessImageConfigure")


def test_on_sqlite_reads_may_run_on_the_event_loop_and_writes_on_one_thread(provider):
    assert provider.inline_actions >= {DESCRIBE, "DescribeTaskDetail", "DescribeTasks"}
    assert provider.serial_actions >= {CREATE, MODIFY, DELETE}
    # submission resolves host names and stores bytes: never on the loop or the writer thread
    assert "ProcessImageAsync" not in provider.inline_actions | provider.serial_actions
    assert provider.inline_actions >= {"DescribeMediaInfos"} and "ApplyUpload" in provider.serial_actions
    # CommitUpload reads the object store, PullUpload resolves host names, DeleteMedia deletes bytes
    assert not {"CommitUpload", "PullUpload", "DeleteMedia"} & (provider.inline_actions | provider.serial_actions)


@pytest.mark.postgres
def test_nothing_runs_on_the_event_loop_with_postgresql(postgres_url):
    database = Database(postgres_url)
    try:
        database.migrate()
        provider = VodProvider(AccountService(database), TemplateService(database))
        assert provider.inline_actions == provider.serial_actions == frozenset()
    finally:
        database.dispose()
