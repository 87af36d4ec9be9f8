"""Every integer the spec lets through reaches the service safely: for EVERY action the provider
implements and every Integer member of its request (found by walking the spec's structures, nested
ones included), the values 2**63, 2**64-1, -1 and 2**31 go through the real server (SQLite and
PostgreSQL) with the official SDK, and the answer is never InternalError. Id strings of digits
(FileId, TaskId, ...) get the same treatment. A SubAppId the account does not own, however large,
is UnauthorizedOperation."""

from __future__ import annotations

import copy
import json

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from vodimg.api.provider import VodProvider
from vodimg.errors import ApiError
from vodimg.spec import api_spec
from vodimg.validation import validate_request
from vodimg.wire.params import parse_form, unflatten

HOSTILE_INTEGERS = (2**63, 2**64 - 1, -1, 2**31)
HOSTILE_DIGIT_STRINGS = ("9223372036854775808", "18446744073709551615", "-1", "0")
# URLs in the examples would be fetched: loopback port 1 is refused at once (URL guard or not).
HARMLESS_URL = "http://127.0.0.1:1/image.jpg"
VALIDATION_ERRORS = ("InvalidParameter", "MissingParameter", "UnknownParameter")


def _members(struct: str):
    return [m for m in api_spec()["objects"][struct]["members"] if not m.get("disabled")]


def paths_of(struct: str, kind: str, prefix: tuple = ()):
    """Paths (keys and list index 0) of every member of ``kind`` ("int" or "id-string") in
    ``struct``, nested structures included (the spec is finite and acyclic)."""
    objects = api_spec()["objects"]
    for member in _members(struct):
        path = prefix + (member["name"],)
        json_type, element = member["type"], member["member"]
        if json_type == "list":
            path += (0,)
        if element in objects:
            yield from paths_of(element, kind, path)
        elif kind == "int" and element in ("int64", "uint64"):
            yield path
        elif kind == "id-string" and element == "string" and member["name"].rstrip("s").endswith("Id"):
            yield path


def example_params(action: str) -> dict:
    """The first spec example's parameters (JSON body, or the query of a GET example), typed as the
    spec says, without SubAppId (so the tenant's own application is addressed)."""
    text = api_spec()["examples"][action][0]["input"]
    if "\n\n" in text:
        params = json.loads(text.split("\n\n", 1)[1] or "{}")
    else:
        query = text.split("?", 1)[1].replace("\n", "")
        pairs = [part for part in query.split("&") if part and not part.startswith(("<", "Action="))]
        params = unflatten(parse_form("&".join(pairs)))
        try:
            params = validate_request(action, params, from_strings=True)
        except ApiError:
            pass  # left as strings: still a request the server must answer properly
    params.pop("SubAppId", None)
    return _harmless(params)


def _harmless(value):
    if isinstance(value, dict):
        return {key: _harmless(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_harmless(item) for item in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return HARMLESS_URL
    return value


def with_value(params: dict, path: tuple, value) -> dict:
    """A copy of ``params`` with ``value`` at ``path`` (missing parents made)."""
    result = copy.deepcopy(params)
    node = result
    for key, following in zip(path, path[1:]):
        empty = [] if isinstance(following, int) else {}
        if isinstance(key, int):
            if not node:
                node.append(empty)
            elif not isinstance(node[0], type(empty)):
                node[0] = empty
            node = node[0]
        else:
            if not isinstance(node.get(key), type(empty)):
                node[key] = empty
            node = node[key]
    last = path[-1]
    if isinstance(last, int):
        node[:] = [value]
    else:
        node[last] = value
    return result


def cases():
    for action in sorted(VodProvider.actions):
        base = example_params(action)
        request = f"{action}Request"
        for path in paths_of(request, "int"):
            for value in HOSTILE_INTEGERS:
                yield action, path, with_value(base, path, value)
        for path in paths_of(request, "id-string"):
            for value in HOSTILE_DIGIT_STRINGS:
                yield action, path, with_value(base, path, value)


def error_code(tenant, action: str, params: dict) -> str | None:
    try:
        tenant.call(action, params)
    except TencentCloudSDKException as error:
        return error.code
    return None


def test_the_walk_finds_the_integers_of_every_action():
    """The walk is not vacuous: it finds top-level, nested and list members."""
    create = set(paths_of("CreateProcessImageAsyncTemplateRequest", "int"))
    assert ("SubAppId",) in create
    assert ("ProcessImageConfigure", "EncodeConfig", "Quality") in create
    assert ("ProcessImageConfigure", "BeautyConfig", "BeautyEffectItems", 0, "Value") in create
    assert ("Definitions", 0) in set(paths_of("DescribeProcessImageAsyncTemplatesRequest", "int"))
    for action in VodProvider.actions:
        assert ("SubAppId",) in set(paths_of(f"{action}Request", "int")), action


@pytest.mark.slow
def test_no_integer_value_is_an_internal_error(tenant):
    failures = []
    count = 0
    for action, path, params in cases():
        count += 1
        code = error_code(tenant, action, params)
        if code == "InternalError":
            failures.append(f"{action} {'.'.join(map(str, path))}: {json.dumps(params)[:200]}")
    assert count > 100
    assert not failures, "InternalError for:\n" + "\n".join(failures)


@pytest.mark.parametrize("sub_app_id", [2**63, 2**64 - 1, 2**63 - 1, 2**31])
def test_a_foreign_sub_app_id_of_any_size_is_unauthorized_on_every_action(tenant, sub_app_id):
    """Validation runs first, so an example the validator refuses keeps its validation error;
    everything else is UnauthorizedOperation, as for any application of another account."""
    for action in sorted(VodProvider.actions):
        params = example_params(action)
        code = error_code(tenant, action, {**params, "SubAppId": sub_app_id})
        if code != "UnauthorizedOperation":
            assert code == error_code(tenant, action, params), action
            assert code.startswith(VALIDATION_ERRORS), (action, code)
