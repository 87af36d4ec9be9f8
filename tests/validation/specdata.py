"""Test data and helpers derived from the spec: a configure using every member, example bodies,
and walks over spec structures (so the tests follow the spec rather than a retyped copy)."""

from __future__ import annotations

import copy
import json

from vodimg.spec import api_spec

TEMPLATE_ACTIONS = (
    "CreateProcessImageAsyncTemplate",
    "ModifyProcessImageAsyncTemplate",
    "DeleteProcessImageAsyncTemplate",
    "DescribeProcessImageAsyncTemplates",
)

# A valid ProcessImageConfigure that sets every member of every structure below it (checked by
# test_full_configure_covers_the_spec). SuperResolution is OFF because AdvancedSuperResolution is ON.
FULL_CONFIGURE = {
    "EncodeConfig": {"Format": "WebP", "Quality": 80},
    "EnhanceConfig": {
        "SuperResolution": {"Switch": "OFF", "Type": "hq", "Size": 2},
        "AdvancedSuperResolution": {
            "Switch": "ON", "Type": "super", "Mode": "fixed", "Percent": 1.5,
            "Width": 1280, "Height": 720, "LongSide": 1280, "ShortSide": 720,
        },
        "Denoise": {"Switch": "ON", "Type": "strong"},
        "ImageQualityEnhance": {"Switch": "ON", "Type": "normal"},
        "ColorEnhance": {"Switch": "ON", "Type": "strong"},
        "SharpEnhance": {"Switch": "ON", "Intensity": 0.5},
        "FaceEnhance": {"Switch": "ON", "Intensity": 0.25},
        "LowLightEnhance": {"Switch": "ON", "Type": "normal"},
    },
    "BeautyConfig": {
        "BeautyEffectItems": [
            {"Switch": "ON", "Type": "Whiten", "Value": 90, "ResourcePath": "/x.png", "ExtInfo": "{}"},
        ],
        "BeautyFilterItems": [{"Switch": "OFF", "Type": "beauty.faceFeatureSoftlight", "Value": 30}],
    },
    "AiCutOutConfig": {
        "Switch": "ON", "Type": "pattern", "Model": "cutout-1.0-flash",
        "PatternConfig": {
            "TransparencyThreshold": 30, "OpaqueThreshold": 127, "EdgeSamplingStep": 5,
            "EdgeExpansionStep": 6, "EdgeBlendingIntensity": 0.5,
        },
    },
}


def objects() -> dict:
    return api_spec()["objects"]


def member_spec(struct: str, name: str) -> dict:
    return next(m for m in objects()[struct]["members"] if m["name"] == name)


def full_configure() -> dict:
    return copy.deepcopy(FULL_CONFIGURE)


def example_bodies(action: str) -> list[dict]:
    """The JSON bodies of the spec's examples of ``action`` (their input is HTTP text)."""
    bodies = []
    for example in api_spec()["examples"][action]:
        _, _, body = example["input"].partition("\n\n")
        bodies.append(json.loads(body))
    return bodies


def walk(struct: str, value: dict, path: tuple = ()):
    """Yield (path, struct name, member spec) for every member present in ``value``, at any depth;
    paths are tuples of keys and list indexes."""
    specs = {m["name"]: m for m in objects()[struct]["members"]}
    for name, item in value.items():
        member = specs[name]
        here = path + (name,)
        yield here, struct, member
        if member["member"] in objects():
            if member["type"] == "list":
                for index, element in enumerate(item):
                    yield from walk(member["member"], element, here + (index,))
            else:
                yield from walk(member["member"], item, here)


def get_at(value, path: tuple):
    for key in path:
        value = value[key]
    return value


def set_at(value, path: tuple, new) -> None:
    get_at(value, path[:-1])[path[-1]] = new


def dotted(path: tuple) -> str:
    return ".".join(str(key) for key in path)


def stringify(value):
    """What a form/GET request makes of a value: every scalar a string (as the SDK's str())."""
    if isinstance(value, dict):
        return {key: stringify(item) for key, item in value.items()}
    if isinstance(value, list):
        return [stringify(item) for item in value]
    return str(value)
