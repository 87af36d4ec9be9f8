"""Validators compiled once from the spec's objects (vodimg/spec/vod-2018-07-17-subset.json).

Each structure becomes a ``StructValidator`` holding one checker per member, built from the
member's ``type`` (int/float/string/bool/object/list), ``member`` (int64/uint64/string or a
structure name), ``required`` flag, and its entry in ``rules.RULES``. Validating a request is then
a walk over the value that follows the spec's (finite, acyclic) structure: the walk descends only
into members the spec defines, so arbitrarily deep client data is refused at the first level that
does not fit, never recursed into.

Errors: an unknown member -> UnknownParameter; a missing required member -> MissingParameter;
null, a wrong JSON type, an integer beyond 64 bits, or a string that does not parse
(``from_strings``) -> InvalidParameter; a documented range/enum/length -> InvalidParameterValue[.X].
Every message names the parameter by its path, e.g. ``ProcessImageConfigure.EncodeConfig.Quality``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from vodimg.errors import ApiError
from vodimg.spec import api_spec
from vodimg.validation import rules
from vodimg.validation.configure import check_configure

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

# Cross-field checks run on a structure once its members are valid.
STRUCT_CHECKS = {"ProcessImageAsyncTask": check_configure}

# Strict number syntax for values that arrive as strings (Python's int()/float() also accept
# underscores, surrounding spaces, "nan" and "infinity", none of which a client means).
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,40}")  # longer than 64 bits: then "out of range"
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

_JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
                    int: "an integer", float: "a number", type(None): "null"}


def _join(path: str, name) -> str:
    return f"{path}.{name}" if path else str(name)


def _got(value) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _type_error(path: str, expected: str, value) -> ApiError:
    return ApiError("InvalidParameter", f"{path} must be {expected}; got {_got(value)}.")


def _unparsable(path: str, expected: str, text: str) -> ApiError:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return ApiError("InvalidParameter", f"{path} must be {expected}; got {shown!r}, which does not parse.")


class _Integer:
    """A JSON integer (not a boolean) that fits the member's 64 bits. ``uint64`` members also
    take no negative value: a value error of the member (InvalidParameterValue[.X]), since its type
    is right."""

    __slots__ = ("unsigned", "expected", "negative_code")

    def __init__(self, unsigned: bool, member_name: str):
        self.unsigned = unsigned
        self.expected = "an unsigned 64-bit integer" if unsigned else "a 64-bit integer"
        self.negative_code = rules.value_error_code(member_name)

    def check(self, value, path: str, from_strings: bool):
        if from_strings and type(value) is str:
            if not _INT_TEXT.fullmatch(value):
                raise _unparsable(path, self.expected, value)
            value = int(value)
        elif type(value) is not int:
            raise _type_error(path, self.expected, value)
        if not INT64_MIN <= value <= (UINT64_MAX if self.unsigned else INT64_MAX):
            raise ApiError("InvalidParameter", f"{path} must be {self.expected}; {value} is out of range.")
        if self.unsigned and value < 0:
            raise ApiError(self.negative_code, f"{path} must be >= 0; got {value}.")
        return value


class _Float:
    """A JSON number: integers are accepted as they are (1 stays 1); NaN and infinities are not."""

    __slots__ = ()
    expected = "a number"

    def check(self, value, path: str, from_strings: bool):
        if from_strings and type(value) is str:
            if not _FLOAT_TEXT.fullmatch(value):
                raise _unparsable(path, self.expected, value)
            value = float(value)
        elif type(value) is int:
            if not INT64_MIN <= value <= UINT64_MAX:
                raise ApiError("InvalidParameter", f"{path} must be {self.expected}; {value} is out of range.")
            return value
        elif type(value) is not float:
            raise _type_error(path, self.expected, value)
        if not math.isfinite(value):
            raise ApiError("InvalidParameter", f"{path} must be a finite number.")
        return value


class _String:
    __slots__ = ()

    def check(self, value, path: str, from_strings: bool):
        if type(value) is not str:
            raise _type_error(path, "a string", value)
        return value


class _Boolean:
    __slots__ = ()

    def check(self, value, path: str, from_strings: bool):
        if from_strings and type(value) is str:
            lowered = value.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            raise _unparsable(path, "a boolean", value)
        if type(value) is not bool:
            raise _type_error(path, "a boolean", value)
        return value


class _StructRef:
    """A member whose value is a spec structure; resolved lazily so compilation order is free."""

    __slots__ = ("name", "validator")

    def __init__(self, name: str):
        self.name = name
        self.validator = None

    def check(self, value, path: str, from_strings: bool):
        if self.validator is None:
            self.validator = compiled(self.name)
        return self.validator.check(value, path, from_strings)


class _List:
    __slots__ = ("item",)

    def __init__(self, item):
        self.item = item

    def check(self, value, path: str, from_strings: bool):
        if type(value) is not list:
            raise _type_error(path, "an array", value)
        item = self.item
        result = []
        for index, element in enumerate(value):
            element_path = f"{path}.{index}"
            if element is None:
                _null_error(element_path)
            result.append(item.check(element, element_path, from_strings))
        return result


def _null_error(path: str):
    raise ApiError("InvalidParameter", f"{path} must not be null; leave the parameter out instead.")


class _Member:
    """One member of a structure: its type check, then its documented rule."""

    __slots__ = ("kind", "rule", "code")

    def __init__(self, kind, rule_and_code):
        self.kind = kind
        self.code, self.rule = rule_and_code if rule_and_code else (None, None)

    def check(self, value, path: str, from_strings: bool):
        if value is None:
            _null_error(path)
        value = self.kind.check(value, path, from_strings)
        if self.rule is not None:
            value = self.rule.check(value, self.code, path)
        return value


class StructValidator:
    """Validates one spec structure; returns a new dict with coerced, normalised values."""

    __slots__ = ("name", "members", "required", "after")

    def __init__(self, name: str, members: dict[str, _Member], required: tuple[str, ...]):
        self.name = name
        self.members = members
        self.required = required
        self.after = STRUCT_CHECKS.get(name)

    def check(self, value, path: str, from_strings: bool) -> dict:
        if type(value) is not dict:
            where = path or f"the {self.name} structure"
            raise _type_error(where, "an object", value)
        members = self.members
        for key in value:
            if key not in members:
                raise ApiError("UnknownParameter", f"{_join(path, key)} is not a parameter of {self.name}.")
        for name in self.required:
            if name not in value:
                raise ApiError("MissingParameter", f"{_join(path, name)} is required.")
        result = {key: members[key].check(item, _join(path, key), from_strings)
                  for key, item in value.items()}
        if self.after is not None:
            self.after(result, path)
        return result


_SCALARS = {"string": _String(), "float": _Float(), "bool": _Boolean()}


def _kind(struct_name: str, member: dict):
    """The type checker of one spec member."""
    json_type, element = member["type"], member["member"]
    if json_type == "int":
        return _Integer(element == "uint64", member["name"])
    if json_type == "object":
        return _StructRef(element)
    if json_type == "list":
        return _List(_StructRef(element) if element in api_spec()["objects"] else _element_kind(element, member))
    if json_type in _SCALARS:
        return _SCALARS[json_type]
    raise ValueError(f"spec member {struct_name}.{member['name']} has unsupported type {json_type!r}")


def _element_kind(element: str, member: dict):
    if element in ("int64", "uint64"):
        return _Integer(element == "uint64", member["name"])
    if element in ("string", "datetime_iso"):
        return _SCALARS["string"]
    if element in ("float", "bool"):
        return _SCALARS[element]
    raise ValueError(f"spec list member {member['name']} has unsupported element {element!r}")


@lru_cache(maxsize=None)
def compiled(name: str) -> StructValidator:
    """The validator of spec structure ``name`` (compiled on first use, then cached)."""
    spec = api_spec()["objects"].get(name)
    if spec is None:
        raise ValueError(f"no structure {name!r} in the spec")
    members, required = {}, []
    for member in spec["members"]:
        if member.get("disabled"):
            continue
        members[member["name"]] = _Member(_kind(name, member), rules.rule_for(name, member["name"]))
        if member.get("required"):
            required.append(member["name"])
    return StructValidator(name, members, tuple(required))
