"""Cross-field rules of a whole ProcessImageConfigure (ProcessImageAsyncTask).

Single members are checked by the spec walk (vodimg/validation/schema.py); what depends on two
members at once is here. The walk applies it to every ProcessImageAsyncTask it validates, and the
template domain applies it again after Modify merges the given capabilities into the stored ones.
The input is a configure that already passed the spec walk (types and ranges are right).
"""

from __future__ import annotations

from vodimg.errors import ApiError
from vodimg.validation.rules import PATTERN_DEFAULT_OPAQUE, PATTERN_DEFAULT_TRANSPARENCY

# Modes of AdvancedSuperResolution that scale to a target size rather than by a factor.
_SIZED_MODES = ("aspect", "fixed")


def check_configure(configure: dict, path: str = "ProcessImageConfigure") -> None:
    """Raise ApiError(InvalidParameterValue) when members of ``configure`` contradict each other."""
    enhance = configure.get("EnhanceConfig") or {}
    enhance_path = f"{path}.EnhanceConfig"
    _check_one_super_resolution(enhance, enhance_path)
    advanced = enhance.get("AdvancedSuperResolution")
    if _is_on(advanced):
        _check_advanced_target(advanced, f"{enhance_path}.AdvancedSuperResolution")
    pattern = (configure.get("AiCutOutConfig") or {}).get("PatternConfig")
    if pattern:
        _check_pattern_thresholds(pattern, f"{path}.AiCutOutConfig.PatternConfig")


def _is_on(capability: dict | None) -> bool:
    """Whether a capability is switched on; Switch defaults to ON where the spec lets it out."""
    return capability is not None and capability.get("Switch", "ON") == "ON"


def _check_one_super_resolution(enhance: dict, path: str) -> None:
    if _is_on(enhance.get("SuperResolution")) and _is_on(enhance.get("AdvancedSuperResolution")):
        raise ApiError(
            "InvalidParameterValue",
            f"{path}.SuperResolution and {path}.AdvancedSuperResolution cannot both be ON; "
            "switch one of them OFF.")


def _check_advanced_target(advanced: dict, path: str) -> None:
    """Modes aspect and fixed need a target size: Width and Height, or else (as the spec says,
    used when Width and Height are not set) LongSide and ShortSide. Mode percent (the default)
    scales by Percent, 2.0 when left out; Width and Height are then ignored."""
    mode = advanced.get("Mode", "percent")
    if mode not in _SIZED_MODES:
        return
    if "Width" in advanced and "Height" in advanced:
        return
    if "LongSide" in advanced and "ShortSide" in advanced:
        return
    raise ApiError(
        "InvalidParameterValue",
        f"{path}: Mode {mode} needs a target size: Width and Height, or LongSide and ShortSide.")


def _check_pattern_thresholds(pattern: dict, path: str) -> None:
    opaque = pattern.get("OpaqueThreshold", PATTERN_DEFAULT_OPAQUE)
    transparency = pattern.get("TransparencyThreshold", PATTERN_DEFAULT_TRANSPARENCY)
    if opaque <= transparency:
        raise ApiError(
            "InvalidParameterValue",
            f"{path}.OpaqueThreshold ({opaque}) must be greater than "
            f"{path}.TransparencyThreshold ({transparency}) (defaults: OpaqueThreshold "
            f"{PATTERN_DEFAULT_OPAQUE}, TransparencyThreshold {PATTERN_DEFAULT_TRANSPARENCY}).")
