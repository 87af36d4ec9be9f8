"""Parameters of form and query requests: ``A.B.0.C=value`` keys (as the official SDK flattens
nested parameters for GET and the older signatures) back into nested dicts and lists of strings."""

from __future__ import annotations

from urllib.parse import parse_qsl

from vodimg.errors import ApiError

# Segments of one flattened key: the spec nests at most ~7 deep; a cap keeps absurd keys (thousands
# of segments) from costing recursion and quadratic path strings.
MAX_KEY_SEGMENTS = 32


def parse_form(text: str) -> dict[str, str]:
    """``a=1&b=2`` (query string or x-www-form-urlencoded body) as a dict; a repeated key is refused."""
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise ApiError("InvalidParameter", "The request parameters are not valid UTF-8.") from None
    for key, value in pairs:
        if key in params:
            raise ApiError("InvalidParameter", f"The parameter {key} is given more than once.")
        params[key] = value
    return params


def unflatten(flat: dict[str, str]) -> dict:
    """``{"A.B.0.C": "1"}`` -> ``{"A": {"B": [{"C": "1"}]}}``. Numeric segments are list indexes,
    which must run 0, 1, 2, ... without gaps; a key has at most ``MAX_KEY_SEGMENTS`` segments."""
    root: dict = {}
    for key, value in flat.items():
        parts = key.split(".", MAX_KEY_SEGMENTS)
        if len(parts) > MAX_KEY_SEGMENTS:
            raise ApiError("InvalidParameter",
                           f"The parameter name {key[:64]!r}... nests deeper than {MAX_KEY_SEGMENTS} levels.")
        if not all(parts):
            raise ApiError("InvalidParameter", f"The parameter name {key!r} is malformed.")
        node = root
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise _conflict(parts[: depth + 1])
            node = child
        if parts[-1] in node:
            raise _conflict(parts)
        node[parts[-1]] = value
    return _lists(root, "")


def _conflict(parts: list[str]) -> ApiError:
    return ApiError("InvalidParameter", f"The parameter {'.'.join(parts)} is given both as a value and as a structure.")


def _lists(node: object, path: str) -> object:
    """Turn dicts whose keys are all decimal indexes into lists (recursively); the root stays a dict."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value, f"{path}.{key}" if path else key) for key, value in node.items()}
    digit_keys = [key for key in converted if key.isdigit()]
    if not path or not digit_keys:
        return converted
    if len(digit_keys) != len(converted):
        raise ApiError("InvalidParameter", f"The parameter {path} mixes list indexes and member names.")
    by_index = {int(key): value for key, value in converted.items()}
    if len(by_index) != len(converted) or sorted(by_index) != list(range(len(by_index))):
        raise ApiError("InvalidParameter", f"The list {path} must have indexes 0, 1, 2, ... without gaps.")
    return [by_index[index] for index in range(len(by_index))]
