"""TemplateService on SQLite and PostgreSQL: presets, custom templates, quota, merge, races."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from vodimg.domain.accounts import AccountService
from vodimg.domain.presets import PRESET_TIME, PRESETS
from vodimg.domain.templates import MAX_CUSTOM_TEMPLATES_PER_APPLICATION, TemplateService
from vodimg.errors import ApiError
from vodimg.spec import api_spec
from vodimg.storage import Database
from vodimg.validation import check_configure, validate_structure
from tests.domain.test_accounts import _in_parallel

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
PRESET_DEFINITIONS = [p.definition for p in PRESETS]
ITEM_MEMBERS = [m["name"] for m in api_spec()["objects"]["ProcessImageAsyncTemplateItem"]["members"]]
PNG = {"EncodeConfig": {"Format": "PNG", "Quality": 90}}


class SteppingClock:
    """A clock that moves one minute each time it is read."""

    def __init__(self):
        self.moment = datetime(2026, 1, 20, 3, 2, 33, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.moment += timedelta(minutes=1)
        return self.moment


@pytest.fixture
def apps(database) -> tuple[int, int, int]:
    """(first application of account A, second application of A, application of account B)."""
    accounts = AccountService(database)
    a = accounts.create_account()
    a2 = accounts.create_application(a["AppId"], "second")
    b = accounts.create_account()
    return a["SubAppId"], a2["SubAppId"], b["SubAppId"]


@pytest.fixture
def templates(database) -> TemplateService:
    return TemplateService(database, clock=SteppingClock())


def _error(call, *args) -> ApiError:
    with pytest.raises(ApiError) as raised:
        call(*args)
    return raised.value


def _one(templates: TemplateService, sub_app_id: int, definition: int) -> dict:
    total, items = templates.describe(sub_app_id, [definition], 0, 10)
    assert total == 1
    return items[0]


# --- presets ---------------------------------------------------------------------------------


def test_presets_are_valid_process_image_configures():
    assert len(PRESETS) >= 5
    assert len(set(PRESET_DEFINITIONS)) == len(PRESETS)
    for preset in PRESETS:
        assert 0 < preset.definition < 10000
        assert 0 < len(preset.name) <= 64 and 0 < len(preset.comment) <= 256
        validated = validate_structure("ProcessImageAsyncTask", preset.configure, "ProcessImageConfigure")
        check_configure(validated)
        assert validated == preset.configure  # already in normal form


def test_describe_lists_presets_first_with_type_preset(templates, apps):
    own = templates.create(apps[0], "mine", "", PNG)
    total, items = templates.describe(apps[0], None, 0, 100)
    assert total == len(PRESETS) + 1
    assert [i["Definition"] for i in items] == PRESET_DEFINITIONS + [own]
    for item, preset in zip(items, PRESETS):
        assert list(item) == ITEM_MEMBERS
        assert item["Type"] == "Preset"
        assert (item["Name"], item["Comment"]) == (preset.name, preset.comment)
        assert item["CreateTime"] == item["UpdateTime"] == PRESET_TIME
        assert item["ProcessImageConfigure"] == preset.configure
    assert items[-1]["Type"] == "Custom"


def test_presets_can_be_used_but_not_modified_or_deleted(templates, apps):
    for preset in PRESETS:
        assert templates.configure_for_task(apps[0], preset.definition) == preset.configure
        for call, args in (
            (templates.modify, (apps[0], preset.definition, "x", None, None)),
            (templates.delete, (apps[0], preset.definition)),
        ):
            assert _error(call, *args).code == "UnauthorizedOperation"
    # The whole system range is read-only, preset or not.
    assert _error(templates.modify, apps[0], 7, "x", None, None).code == "UnauthorizedOperation"
    assert _error(templates.delete, apps[0], 9999).code == "UnauthorizedOperation"
    assert _error(templates.configure_for_task, apps[0], 7).code == "ResourceNotFound.TemplateNotExist"


def test_handed_out_configures_are_copies(templates, apps):
    preset = PRESETS[0]
    templates.configure_for_task(apps[0], preset.definition)["EnhanceConfig"] = "changed"
    templates.describe(apps[0], None, 0, 1)[1][0]["ProcessImageConfigure"].clear()
    assert templates.configure_for_task(apps[0], preset.definition) == preset.configure
    assert _one(templates, apps[0], preset.definition)["ProcessImageConfigure"] == preset.configure


# --- custom templates ------------------------------------------------------------------------


def test_create_returns_definitions_from_10000_with_iso_times(database, templates, apps):
    first = templates.create(apps[0], "first", "a comment", PNG)
    second = templates.create(apps[0], "second", "", {})
    assert (first, second) == (10000, 10001)
    item = _one(templates, apps[0], first)
    assert item == {
        "Definition": 10000,
        "Type": "Custom",
        "Name": "first",
        "Comment": "a comment",
        "CreateTime": "2026-01-20T03:03:33Z",
        "UpdateTime": "2026-01-20T03:03:33Z",
        "ProcessImageConfigure": PNG,
    }
    assert ISO_UTC.fullmatch(_one(TemplateService(database), apps[0], second)["CreateTime"])


def test_definitions_are_never_reused(templates, apps):
    first = templates.create(apps[0], "a", "", PNG)
    templates.delete(apps[0], first)
    second = templates.create(apps[0], "b", "", PNG)
    elsewhere = templates.create(apps[2], "c", "", PNG)
    templates.delete(apps[0], second)
    templates.delete(apps[2], elsewhere)
    third = templates.create(apps[1], "d", "", PNG)
    assert first < second < elsewhere < third


def test_concurrent_creates_get_distinct_definitions(templates, apps):
    results = _in_parallel(8, lambda i: templates.create(apps[i % 3], f"t{i}", "", PNG))
    assert all(isinstance(r, int) for r in results), results
    assert sorted(results) == list(range(10000, 10008))


def test_quota_of_50_per_application(templates, apps):
    made = [templates.create(apps[0], f"t{i}", "", PNG) for i in range(MAX_CUSTOM_TEMPLATES_PER_APPLICATION)]
    assert MAX_CUSTOM_TEMPLATES_PER_APPLICATION == 50
    assert _error(templates.create, apps[0], "one too many", "", PNG).code == "LimitExceeded"
    # Other applications, even of the same account, have their own quota.
    templates.create(apps[1], "other app", "", PNG)
    templates.delete(apps[0], made[0])
    templates.create(apps[0], "room again", "", PNG)
    assert _error(templates.create, apps[0], "full again", "", PNG).code == "LimitExceeded"
    assert templates.describe(apps[0], None, 0, 1)[0] == len(PRESETS) + 50


def test_quota_holds_under_concurrent_creates(database, apps):
    templates = TemplateService(database)
    for i in range(MAX_CUSTOM_TEMPLATES_PER_APPLICATION - 1):
        templates.create(apps[0], f"t{i}", "", PNG)
    results = _in_parallel(6, lambda i: templates.create(apps[0], f"race{i}", "", PNG))
    created = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, ApiError) and r.code == "LimitExceeded"]
    assert len(created) == 1 and len(refused) == 5, results
    assert templates.describe(apps[0], None, 0, 1)[0] == len(PRESETS) + 50


def test_unknown_deleted_and_other_applications_templates_do_not_exist(templates, apps):
    mine = templates.create(apps[0], "mine", "", PNG)
    gone = templates.create(apps[0], "gone", "", PNG)
    templates.delete(apps[0], gone)
    theirs = templates.create(apps[2], "theirs", "", PNG)
    sibling = templates.create(apps[1], "sibling app", "", PNG)
    for definition in (99999, gone, theirs, sibling):
        for call, args in (
            (templates.modify, (apps[0], definition, "x", None, None)),
            (templates.delete, (apps[0], definition)),
            (templates.configure_for_task, (apps[0], definition)),
        ):
            assert _error(call, *args).code == "ResourceNotFound.TemplateNotExist"
    total, items = templates.describe(apps[0], [mine, gone, theirs, sibling, 99999], 0, 10)
    assert (total, [i["Definition"] for i in items]) == (1, [mine])
    # Nothing of the failed calls touched the other applications' templates.
    assert _one(templates, apps[2], theirs)["Name"] == "theirs"


# --- describe --------------------------------------------------------------------------------


def test_describe_pages_and_counts_all_matches(templates, apps):
    custom = [templates.create(apps[0], f"t{i}", "", PNG) for i in range(7)]
    templates.create(apps[2], "not mine", "", PNG)
    everything = PRESET_DEFINITIONS + custom
    for offset, limit in ((0, 10), (0, 3), (4, 5), (len(everything) - 2, 10), (100, 10)):
        total, items = templates.describe(apps[0], None, offset, limit)
        assert total == len(everything)
        assert [i["Definition"] for i in items] == everything[offset : offset + limit]


def test_describe_filter_by_definitions(templates, apps):
    custom = [templates.create(apps[0], f"t{i}", "", PNG) for i in range(4)]
    wanted = [custom[3], PRESET_DEFINITIONS[1], custom[0], 12345678, 3, custom[3]]
    total, items = templates.describe(apps[0], wanted, 0, 10)
    assert total == 3
    assert [i["Definition"] for i in items] == [PRESET_DEFINITIONS[1], custom[0], custom[3]]
    assert templates.describe(apps[0], wanted, 1, 1) == (3, [items[1]])
    assert templates.describe(apps[0], [custom[0]], 0, 10)[1][0]["Type"] == "Custom"
    assert templates.describe(apps[0], [3, 4], 0, 10) == (0, [])
    # An empty filter is no filter.
    assert templates.describe(apps[0], [], 0, 100)[0] == len(PRESETS) + 4


# --- modify ----------------------------------------------------------------------------------

FULL = {
    "EncodeConfig": {"Format": "JPEG", "Quality": 80},
    "EnhanceConfig": {
        "Denoise": {"Switch": "ON", "Type": "weak"},
        "SharpEnhance": {"Switch": "ON", "Intensity": 0.5},
        "SuperResolution": {"Switch": "ON", "Type": "lq", "Size": 2},
    },
    "AiCutOutConfig": {"Switch": "ON", "Type": "foreground"},
}


def test_modify_name_or_comment_alone_keeps_the_rest(templates, apps):
    definition = templates.create(apps[0], "name", "comment", FULL)
    templates.modify(apps[0], definition, "renamed", None, None)
    templates.modify(apps[0], definition, None, "", None)
    item = _one(templates, apps[0], definition)
    assert (item["Name"], item["Comment"], item["ProcessImageConfigure"]) == ("renamed", "", FULL)


def test_modify_replaces_each_given_capability_whole(templates, apps):
    definition = templates.create(apps[0], "t", "", FULL)
    templates.modify(apps[0], definition, None, None, {
        "EncodeConfig": {"Format": "WebP"},
        "EnhanceConfig": {
            "SharpEnhance": {"Switch": "OFF"},
            "ColorEnhance": {"Switch": "ON", "Type": "strong"},
        },
    })
    assert _one(templates, apps[0], definition)["ProcessImageConfigure"] == {
        "EncodeConfig": {"Format": "WebP"},  # Quality went with the old EncodeConfig
        "EnhanceConfig": {
            "Denoise": {"Switch": "ON", "Type": "weak"},
            "SharpEnhance": {"Switch": "OFF"},
            "SuperResolution": {"Switch": "ON", "Type": "lq", "Size": 2},
            "ColorEnhance": {"Switch": "ON", "Type": "strong"},
        },
        "AiCutOutConfig": {"Switch": "ON", "Type": "foreground"},
    }


def test_modify_bumps_update_time_only(templates, apps):
    definition = templates.create(apps[0], "t", "", FULL)
    before = _one(templates, apps[0], definition)
    templates.modify(apps[0], definition, "t2", None, None)
    after = _one(templates, apps[0], definition)
    assert after["CreateTime"] == before["CreateTime"]
    assert ISO_UTC.fullmatch(after["UpdateTime"]) and after["UpdateTime"] > before["UpdateTime"]


def test_modify_checks_the_merged_configure(templates, apps):
    definition = templates.create(apps[0], "t", "", FULL)  # SuperResolution ON
    advanced_on = {"EnhanceConfig": {"AdvancedSuperResolution": {"Switch": "ON", "Mode": "percent", "Percent": 2.0}}}
    error = _error(templates.modify, apps[0], definition, "changed", None, advanced_on)
    assert error.code == "InvalidParameterValue"
    assert "ProcessImageConfigure.EnhanceConfig.SuperResolution" in error.message
    assert _one(templates, apps[0], definition)["Name"] == "t"  # nothing changed
    # Switching SuperResolution off in the same call makes it valid.
    both = {"EnhanceConfig": {**advanced_on["EnhanceConfig"], "SuperResolution": {"Switch": "OFF"}}}
    templates.modify(apps[0], definition, None, None, both)
    enhance = _one(templates, apps[0], definition)["ProcessImageConfigure"]["EnhanceConfig"]
    assert enhance["SuperResolution"] == {"Switch": "OFF"} and enhance["AdvancedSuperResolution"]["Switch"] == "ON"


def test_racing_modifications_of_different_capabilities_are_both_kept(database, apps):
    templates = TemplateService(database)
    definition = templates.create(apps[0], "t", "", {})
    for round_ in range(1, 9):
        changes = [
            {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": round_ / 10}}},
            {"EncodeConfig": {"Format": "PNG", "Quality": round_}},
        ]
        results = _in_parallel(2, lambda i: templates.modify(apps[0], definition, None, None, changes[i]))
        assert results == [None, None]
        configure = templates.configure_for_task(apps[0], definition)
        assert configure["EnhanceConfig"]["SharpEnhance"]["Intensity"] == round_ / 10
        assert configure["EncodeConfig"]["Quality"] == round_


def test_a_task_snapshot_is_not_changed_by_later_modifications(templates, apps):
    definition = templates.create(apps[0], "t", "", FULL)
    snapshot = templates.configure_for_task(apps[0], definition)
    templates.modify(apps[0], definition, None, None, {"EncodeConfig": {"Format": "PNG"}})
    templates.delete(apps[0], definition)
    assert snapshot == FULL


def test_templates_persist_across_database_objects(database_url):
    db = Database(database_url)
    db.migrate()
    sub_app_id = AccountService(db).create_account()["SubAppId"]
    definition = TemplateService(db).create(sub_app_id, "kept", "c", FULL)
    db.dispose()
    reopened = Database(database_url)
    try:
        reopened.migrate()
        templates = TemplateService(reopened)
        assert _one(templates, sub_app_id, definition)["Name"] == "kept"
        assert templates.create(sub_app_id, "next", "", {}) == definition + 1
    finally:
        reopened.dispose()


def test_describe_sees_every_change_made_through_another_database_object_at_once(database, database_url):
    """Another process's writes (here: another Database object, its own pool) are never hidden by
    what this process has cached."""
    sub_app_id = AccountService(database).create_account()["SubAppId"]
    reader = TemplateService(database)
    other_db = Database(database_url)
    try:
        writer = TemplateService(other_db)

        def custom() -> dict:
            return {item["Definition"]: item for item in reader.describe(sub_app_id, None, 0, 100)[1]
                    if item["Type"] == "Custom"}

        assert custom() == {}
        first = writer.create(sub_app_id, "one", "", PNG)
        assert list(custom()) == [first]
        assert custom() == custom()  # served again, unchanged
        writer.modify(sub_app_id, first, "renamed", None, {"EncodeConfig": {"Format": "JPEG", "Quality": 70}})
        item = custom()[first]
        assert item["Name"] == "renamed"
        assert item["ProcessImageConfigure"]["EncodeConfig"] == {"Format": "JPEG", "Quality": 70}
        second = writer.create(sub_app_id, "two", "", {})
        assert list(custom()) == [first, second]
        writer.delete(sub_app_id, first)
        assert list(custom()) == [second]
        assert reader.describe(sub_app_id, [first, second], 0, 10)[0] == 1
    finally:
        other_db.dispose()


def test_docs_describe_every_preset():
    import json
    import pathlib

    text = (pathlib.Path(__file__).parents[2] / "docs" / "presets.md").read_text("utf-8")
    for preset in PRESETS:
        assert f"| {preset.definition} | {preset.name} | {preset.comment} |" in text
        assert json.dumps(preset.configure, indent=2) in text
