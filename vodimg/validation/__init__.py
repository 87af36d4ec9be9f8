"""The spec-driven validator of API input.

``validate_request`` checks an action's parameters against the spec object ``<Action>Request``;
``validate_structure`` checks one spec structure (e.g. a ProcessImageAsyncTask read from a file);
``check_configure`` applies the cross-field rules of a whole ProcessImageConfigure. Member names,
types and required flags come from ``vodimg/spec``; documented ranges and enums from
``vodimg/validation/rules.py``. All failures are ``vodimg.errors.ApiError``.
"""

from __future__ import annotations

from vodimg.errors import ApiError
from vodimg.spec import api_spec
from vodimg.validation.configure import check_configure
from vodimg.validation.schema import compiled

__all__ = ["validate_request", "validate_structure", "check_configure"]


def validate_request(action: str, params: dict, *, from_strings: bool = False) -> dict:
    """Validate ``params`` of ``action``; return them coerced (``from_strings``: every value arrived
    as a string from a form or query string) and normalised (e.g. Format "webp" -> "WebP").
    The input is not modified."""
    if f"{action}Request" not in api_spec()["objects"]:
        raise ApiError("InvalidAction", f"The action {action!r} does not exist.")
    return compiled(f"{action}Request").check(params, "", from_strings)


def validate_structure(name: str, value: object, path: str = "", *, from_strings: bool = False) -> object:
    """Validate ``value`` as the spec structure ``name``; ``path`` prefixes the names in errors
    (e.g. ``validate_structure("ProcessImageAsyncTask", conf, "ProcessImageConfigure")``).
    An unknown structure name is a programming error (ValueError)."""
    return compiled(name).check(value, path, from_strings)
