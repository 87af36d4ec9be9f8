"""System preset templates (Definitions below 10000), as data. Documented in docs/presets.md.

Each preset is a complete ProcessImageConfigure valid against the spec structure
``ProcessImageAsyncTask``. Presets are listed by DescribeProcessImageAsyncTemplates with
``Type: "Preset"``, usable by ProcessImageAsync, and cannot be modified or deleted. Capabilities left
out are off; an EncodeConfig left out keeps the source format and quality.

Definitions are spaced by ten per family so that related presets can be added later without
renumbering; a Definition, once shipped, keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

# CreateTime and UpdateTime of every preset: the date this preset set was fixed.
PRESET_TIME = "2026-01-01T00:00:00Z"
FIRST_CUSTOM_DEFINITION = 10000


@dataclass(frozen=True)
class Preset:
    definition: int
    name: str  # at most 64 characters, like custom templates
    comment: str  # at most 256 characters
    configure: dict  # ProcessImageConfigure; never mutate it (describe hands out copies)


PRESETS: tuple[Preset, ...] = (
    Preset(
        10,
        "2x super-resolution (hq)",
        "Doubles width and height with the sharpest super-resolution model. For clean, "
        "well-exposed sources. Keeps the source format and quality.",
        {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": "hq", "Size": 2}}},
    ),
    Preset(
        11,
        "2x super-resolution (lq)",
        "Doubles width and height with the super-resolution model that also removes noise and "
        "compression artefacts. For small, noisy or heavily compressed sources.",
        {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": "lq", "Size": 2}}},
    ),
    Preset(
        20,
        "General quality enhance",
        "Everyday clean-up at the same size: light denoise, overall quality enhancement, "
        "a little more colour and a moderate detail boost.",
        {
            "EnhanceConfig": {
                "Denoise": {"Switch": "ON", "Type": "weak"},
                "ImageQualityEnhance": {"Switch": "ON", "Type": "normal"},
                "ColorEnhance": {"Switch": "ON", "Type": "weak"},
                "SharpEnhance": {"Switch": "ON", "Intensity": 0.3},
            }
        },
    ),
    Preset(
        30,
        "Portrait (face + beauty)",
        "For photos of people: light denoise, face enhancement of every detected face, "
        "skin smoothing and gentle whitening.",
        {
            "EnhanceConfig": {
                "Denoise": {"Switch": "ON", "Type": "weak"},
                "FaceEnhance": {"Switch": "ON", "Intensity": 0.6},
            },
            "BeautyConfig": {
                "BeautyEffectItems": [
                    {"Switch": "ON", "Type": "Smooth", "Value": 40},
                    {"Switch": "ON", "Type": "Whiten", "Value": 20},
                ]
            },
        },
    ),
    Preset(
        40,
        "Low-light",
        "Brightens dark and under-exposed photos while keeping highlights, then removes the "
        "noise that brightening reveals.",
        {
            "EnhanceConfig": {
                "LowLightEnhance": {"Switch": "ON", "Type": "normal"},
                "Denoise": {"Switch": "ON", "Type": "weak"},
            }
        },
    ),
    Preset(
        50,
        "WebP re-encode",
        "Re-encodes to WebP at 85% of the source's quality, keeping transparency; no other "
        "processing. Typically a much smaller file for the web.",
        {"EncodeConfig": {"Format": "WebP", "Quality": 85}},
    ),
)

PRESETS_BY_DEFINITION: MappingProxyType[int, Preset] = MappingProxyType(
    {preset.definition: preset for preset in PRESETS}
)


def is_preset_definition(definition: int) -> bool:
    """Whether ``definition`` is in the system range (whether or not a preset has that number)."""
    return definition < FIRST_CUSTOM_DEFINITION
