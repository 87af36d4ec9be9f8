"""The API specification as data (copied from the official CLI's spec files).

Everything that knows field names, types, required flags or error codes reads them from here,
so parity with the real service comes from data rather than retyping.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

API_VERSION = "2018-07-17"


def _load(name: str):
    return json.loads(resources.files(__package__).joinpath(name).read_text("utf-8"))


@lru_cache(maxsize=None)
def api_spec() -> dict:
    """The whole subset spec: ``actions``, ``objects``, ``examples``."""
    return _load("vod-2018-07-17-subset.json")


@lru_cache(maxsize=None)
def error_codes() -> frozenset[str]:
    """Every error code the service may answer with (common and VOD-specific)."""
    common = _load("common-error-codes.json")["codes"].keys()
    vod = (item["code"] for item in _load("vod-error-codes.json"))
    return frozenset(common) | frozenset(vod)


@lru_cache(maxsize=None)
def vod_actions() -> frozenset[str]:
    """The name of every action VOD 2018-07-17 has (implemented here or not)."""
    return frozenset(_load("vod-actions.json")["actions"])
