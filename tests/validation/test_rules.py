"""The rules table against the spec's own text: every figure the spec documents is the one the
rule enforces, every documented range or enum has a rule, every code a rule raises exists."""

from __future__ import annotations

import re

import pytest

from vodimg.errors import ApiError
from vodimg.spec import error_codes
from vodimg.validation.rules import RULES, Between, Chars, MaxItems, OneOf, rule_for, rules_table
from tests.validation.specdata import TEMPLATE_ACTIONS, member_spec, objects

# Figures the spec does not state, chosen by us (see the comments in vodimg/validation/rules.py).
OURS = {
    "*.SubAppId": "positive: 0 names no application",
    "AdvancedSuperResolutionConfig.Percent": "(0, 8]: the spec only says it may be fractional",
    "PatternConfig.EdgeExpansionStep": "0..50: the spec gives only the default 5",
    "BeautyEffectItem.Type": "non-empty; the names are the engine's",
    "BeautyFilterItem.Type": "non-empty; the names are the engine's",
    "BeautyEffectItem.Value": "0..100: a percentage, like the examples",
    "BeautyFilterItem.Value": "0..100: a percentage, like the examples",
    "ModifyEventConfigRequest.NotificationUrl": "at most 1024 characters: the spec gives no limit",
}
# Lower bounds that are ours where the spec states only the upper one.
OUR_LOWER_BOUNDS = {
    "DescribeProcessImageAsyncTemplatesRequest.Limit", "DescribeTasksRequest.Limit",
    "AdvancedSuperResolutionConfig.Width", "AdvancedSuperResolutionConfig.Height",
    "AdvancedSuperResolutionConfig.LongSide", "AdvancedSuperResolutionConfig.ShortSide",
}
# Documented value lists that are not rules: the media library checks MediaType against the image
# types it reads (vodimg/domain/uploads.py); covers and DeleteParts types concern video only.
CHECKED_ELSEWHERE = {"ApplyUploadRequest.MediaType", "ApplyUploadRequest.CoverType", "MediaDeleteItem.Type"}
# Words that mark a documented range, enum or length in the spec's Chinese text.
DOCUMENTED_LIMIT = re.compile("可选值|取值范围|枚举值|不能超过|长度限制|最大值|最长|&quot;")


def _figures(key: str, rule) -> list[str]:
    """The texts the spec document must contain for ``rule``."""
    if isinstance(rule, OneOf):
        return [str(value) for value in rule.values]
    if isinstance(rule, Between):
        figures = [str(rule.high)]
        if key not in OUR_LOWER_BOUNDS:
            figures.append(str(rule.low))
        return figures
    if isinstance(rule, Chars):
        return [str(rule.max_chars)]
    if isinstance(rule, MaxItems):
        return [str(rule.limit)]
    raise AssertionError(f"unknown rule type {rule!r}")


@pytest.mark.parametrize("key", sorted(k for k in RULES if k not in OURS))
def test_rule_matches_the_spec_text(key):
    struct, member = key.split(".")
    document = member_spec(struct, member)["document"]
    for figure in _figures(key, RULES[key][1]):
        assert figure in document, f"{key}: {figure!r} not in the spec text {document!r}"


@pytest.mark.parametrize("key", sorted(RULES))
def test_rule_names_a_spec_member_and_a_known_code(key):
    struct, member = key.split(".")
    structs = objects() if struct == "*" else {struct: objects()[struct]}
    holders = [name for name, spec in structs.items()
               if any(m["name"] == member for m in spec["members"])]
    assert holders, f"{key} names no member of the spec"
    for holder in holders:
        code, _ = rule_for(holder, member)
        assert code in error_codes()


def _reachable(struct: str, seen: set) -> set:
    if struct not in seen:
        seen.add(struct)
        for member in objects()[struct]["members"]:
            if member["member"] in objects():
                _reachable(member["member"], seen)
    return seen


def test_every_documented_limit_of_the_template_actions_has_a_rule():
    structs = set()
    for action in TEMPLATE_ACTIONS + ("ProcessImageAsync", "PullEvents", "ConfirmEvents", "ModifyEventConfig",
                                      "ApplyUpload", "CommitUpload", "PullUpload", "DescribeMediaInfos",
                                      "DeleteMedia"):
        _reachable(f"{action}Request", structs)
    missing = [f"{struct}.{m['name']}" for struct in sorted(structs)
               for m in objects()[struct]["members"]
               if DOCUMENTED_LIMIT.search(m["document"]) and rule_for(struct, m["name"]) is None
               and f"{struct}.{m['name']}" not in CHECKED_ELSEWHERE]
    assert missing == []


@pytest.mark.parametrize("member, code", [
    ("Name", "InvalidParameterValue.Name"), ("Comment", "InvalidParameterValue.Comment"),
    ("Quality", "InvalidParameterValue.Quality"), ("Format", "InvalidParameterValue.Format"),
    ("Switch", "InvalidParameterValue.Switch"), ("Type", "InvalidParameterValue.Type"),
    ("Width", "InvalidParameterValue.Width"), ("Limit", "InvalidParameterValue.Limit"),
    ("Definitions", "InvalidParameterValue.Definitions"), ("SubAppId", "InvalidParameterValue.SubAppId"),
    ("Intensity", "InvalidParameterValue"), ("Mode", "InvalidParameterValue"),
    ("LongSide", "InvalidParameterValue"), ("Percent", "InvalidParameterValue"),
])
def test_codes_are_member_specific_where_the_error_list_has_them(member, code):
    struct = next(name for name, _ in RULES.items() if name.endswith(f".{member}")).split(".")[0]
    struct = struct if struct != "*" else "DescribeProcessImageAsyncTemplatesRequest"
    assert rule_for(struct, member)[0] == code


def test_sign_key_rule_takes_letters_and_digits_only():
    code, rule = rule_for("ModifyEventConfigRequest", "SignKey")
    assert rule.check("abcXYZ019" + "a" * 23, code, "SignKey") == "abcXYZ019" + "a" * 23
    assert rule.check("", code, "SignKey") == ""
    for bad in ("a" * 33, "with space", "dash-key", "ключ", "key_1"):
        with pytest.raises(ApiError) as raised:
            rule.check(bad, code, "SignKey")
        assert raised.value.code == "InvalidParameterValue" and "SignKey" in raised.value.message


def test_rules_table_lists_every_rule_with_its_code():
    table = rules_table().splitlines()
    assert len(table) == 2 + len(RULES)
    assert "| `ImageEncodeConfig.Quality` | from 1 to 100 | `InvalidParameterValue.Quality` |" in table
    assert "| `SuperResolutionInfo.Size` | 2 | `InvalidParameterValue` |" in table
