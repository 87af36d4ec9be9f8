"""Documented value rules (ranges, enums, lengths), as data keyed by ``Struct.Member``.

Types, required flags and member names come from the spec itself; what the spec states only in
its Chinese ``document`` text is recorded here, once. ``tests/validation/test_rules.py`` checks
each entry against that text where the text gives the figure, so a rule cannot drift from the
spec silently. Bounds the spec leaves open are marked "(ours)" and explained.

A key ``*.Member`` applies to that member in every structure that has it. Each rule's
``check(value, code, path)`` gets a value already of the member's JSON type (finite numbers only)
and returns it, normalised where the rule says so. A rule that fails raises
``InvalidParameterValue.<Member>`` when that code exists in the error-code lists
(``vodimg.spec.error_codes()``), else ``InvalidParameterValue``; an entry may name its own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vodimg.errors import ApiError
from vodimg.spec import error_codes


@dataclass(frozen=True)
class OneOf:
    """The value is one of ``values``; with ``ignore_case`` any capitalisation is accepted and
    normalised to the spelling in ``values``."""

    values: tuple[str | int, ...]
    ignore_case: bool = False

    def describe(self) -> str:
        if len(self.values) == 1:
            return str(self.values[0])
        listed = ", ".join(str(value) for value in self.values)
        return "one of " + listed + (" (any case)" if self.ignore_case else "")

    def check(self, value, code: str, path: str):
        if value in self.values:
            return value
        if self.ignore_case and isinstance(value, str):
            for allowed in self.values:
                if allowed.lower() == value.lower():
                    return allowed
        raise ApiError(code, f"{path} must be {self.describe()}; got {_short(value)}.")


@dataclass(frozen=True)
class Between:
    """``low <= value <= high``; ``low_open`` makes the lower bound exclusive; None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None and not self.low_open:
            return f"from {self.low} to {self.high}"
        low = None if self.low is None else ("greater than " if self.low_open else "at least ") + str(self.low)
        high = None if self.high is None else "at most " + str(self.high)
        return " and ".join(part for part in (low, high) if part)

    def check(self, value, code: str, path: str):
        low, high = self.low, self.high
        below = low is not None and (value <= low if self.low_open else value < low)
        if below or (high is not None and value > high):
            raise ApiError(code, f"{path} must be {self.describe()}; got {value!r}.")
        return value


@dataclass(frozen=True)
class Chars:
    """A string of ``min_chars`` to ``max_chars`` characters (Unicode code points, not bytes);
    ``max_chars`` None: no upper limit. ``alphanumeric``: ASCII letters and digits only."""

    max_chars: int | None = None
    min_chars: int = 0
    alphanumeric: bool = False

    def describe(self) -> str:
        if self.max_chars is None:
            text = f"at least {self.min_chars} character{'s' if self.min_chars != 1 else ''} long"
        elif self.min_chars:
            text = f"{self.min_chars} to {self.max_chars} characters long"
        else:
            text = f"at most {self.max_chars} characters long"
        return text + (", letters (A-Z, a-z) and digits only" if self.alphanumeric else "")

    def check(self, value, code: str, path: str):
        length = len(value)
        if length < self.min_chars or (self.max_chars is not None and length > self.max_chars):
            raise ApiError(code, f"{path} must be {self.describe()}; got {length} characters.")
        if self.alphanumeric and value and not (value.isascii() and value.isalnum()):
            raise ApiError(code, f"{path} must be {self.describe()}; got {_short(value)}.")
        return value


@dataclass(frozen=True)
class MaxItems:
    """A list of at most ``limit`` items."""

    limit: int

    def describe(self) -> str:
        return f"a list of at most {self.limit} items"

    def check(self, value, code: str, path: str):
        if len(value) > self.limit:
            raise ApiError(code, f"{path} must be {self.describe()}; got {len(value)} items.")
        return value


Rule = OneOf | Between | Chars | MaxItems

ON_OFF = OneOf(("ON", "OFF"))
WEAK_NORMAL_STRONG = OneOf(("weak", "normal", "strong"))
UNIT_INTERVAL = Between(0.0, 1.0)
NON_EMPTY = Chars(min_chars=1)
SIDE = Between(1, 4096)  # the spec: "不能超过4096" (at most 4096); lower bound 1 is ours
TEMPLATE_NAME = Chars(max_chars=64)
TEMPLATE_COMMENT = Chars(max_chars=256)

# Default and upper bound of AdvancedSuperResolution.Percent (ours: the spec gives neither; the
# default matches the example's "2.0" and SuperResolution's Size 2; above 8x an image bigger than
# 512 px per side would pass the 4096 px limit its Width/Height documents). The engine, which
# imports nothing outside vodimg/engine, must apply the same default.
ADVANCED_SR_DEFAULT_PERCENT = 2.0
ADVANCED_SR_MAX_PERCENT = 8.0

# Defaults the spec documents, needed by cross-field rules (vodimg/validation/configure.py).
PATTERN_DEFAULT_TRANSPARENCY = 30
PATTERN_DEFAULT_OPAQUE = 127

RULES: dict[str, tuple[str | None, Rule]] = {
    # key: (explicit error code or None for the InvalidParameterValue[.Member] default, rule)
    # Template requests
    "CreateProcessImageAsyncTemplateRequest.Name": (None, TEMPLATE_NAME),
    "CreateProcessImageAsyncTemplateRequest.Comment": (None, TEMPLATE_COMMENT),
    "ModifyProcessImageAsyncTemplateRequest.Name": (None, TEMPLATE_NAME),
    "ModifyProcessImageAsyncTemplateRequest.Comment": (None, TEMPLATE_COMMENT),
    "DescribeProcessImageAsyncTemplatesRequest.Definitions": (None, MaxItems(100)),
    "DescribeProcessImageAsyncTemplatesRequest.Limit": (None, Between(1, 100)),
    "DescribeTasksRequest.Limit": (None, Between(1, 100)),
    "DescribeTasksRequest.Status": (None, OneOf(("WAITING", "PROCESSING", "FINISH"))),
    # SubAppId 0 names no application (ours: the spec only says it is the application's ID).
    "*.SubAppId": (None, Between(1, None)),
    # Encoding
    "ImageEncodeConfig.Format": (None, OneOf(("JPEG", "PNG", "BMP", "WebP"), ignore_case=True)),
    "ImageEncodeConfig.Quality": (None, Between(1, 100)),
    # Enhancement
    "SuperResolutionInfo.Switch": (None, ON_OFF),
    "SuperResolutionInfo.Type": (None, OneOf(("lq", "hq"))),
    "SuperResolutionInfo.Size": (None, OneOf((2,))),
    "AdvancedSuperResolutionConfig.Switch": (None, ON_OFF),
    "AdvancedSuperResolutionConfig.Type": (None, OneOf(("standard", "super"))),
    "AdvancedSuperResolutionConfig.Mode": (None, OneOf(("aspect", "fixed", "percent"))),
    "AdvancedSuperResolutionConfig.Percent": (
        None, Between(0, ADVANCED_SR_MAX_PERCENT, low_open=True)),
    "AdvancedSuperResolutionConfig.Width": (None, SIDE),
    "AdvancedSuperResolutionConfig.Height": (None, SIDE),
    "AdvancedSuperResolutionConfig.LongSide": (None, SIDE),
    "AdvancedSuperResolutionConfig.ShortSide": (None, SIDE),
    "ImageDenoiseConfig.Switch": (None, ON_OFF),
    "ImageDenoiseConfig.Type": (None, OneOf(("weak", "strong"))),
    "ImageQualityEnhanceInfo.Switch": (None, ON_OFF),
    "ImageQualityEnhanceInfo.Type": (None, WEAK_NORMAL_STRONG),
    "ColorEnhanceInfo.Switch": (None, ON_OFF),
    "ColorEnhanceInfo.Type": (None, WEAK_NORMAL_STRONG),
    "SharpEnhanceInfo.Switch": (None, ON_OFF),
    "SharpEnhanceInfo.Intensity": (None, UNIT_INTERVAL),
    "FaceEnhanceInfo.Switch": (None, ON_OFF),
    "FaceEnhanceInfo.Intensity": (None, UNIT_INTERVAL),
    "LowLightEnhanceInfo.Switch": (None, ON_OFF),
    "LowLightEnhanceInfo.Type": (None, OneOf(("normal",))),
    # Beauty: the spec lists no Type names; the image engine defines and checks them, so here a
    # Type only has to be non-empty. No range is documented for Value (ours: a percentage, like
    # the examples 90 and 30).
    "BeautyEffectItem.Switch": (None, ON_OFF),
    "BeautyEffectItem.Type": (None, NON_EMPTY),
    "BeautyEffectItem.Value": (None, Between(0, 100)),
    "BeautyFilterItem.Switch": (None, ON_OFF),
    "BeautyFilterItem.Type": (None, NON_EMPTY),
    "BeautyFilterItem.Value": (None, Between(0, 100)),
    # Cut-out
    "AiCutOutConfig.Switch": (None, ON_OFF),
    "AiCutOutConfig.Type": (None, OneOf(("foreground", "pattern"))),
    "AiCutOutConfig.Model": (None, OneOf(("cutout-1.0-lite", "cutout-1.0-flash"))),
    "PatternConfig.TransparencyThreshold": (None, Between(0, 255)),
    "PatternConfig.OpaqueThreshold": (None, Between(0, 255)),
    "PatternConfig.EdgeSamplingStep": (None, Between(1, 10)),
    # ours: the spec gives only the default 5; 50 steps already spans a large part of any image.
    "PatternConfig.EdgeExpansionStep": (None, Between(0, 50)),
    "PatternConfig.EdgeBlendingIntensity": (None, UNIT_INTERVAL),
    # Image task submission (ProcessImageAsync)
    "ProcessImageAsyncRequest.TasksPriority": (None, Between(-10, 10)),
    "ProcessImageAsyncRequest.SessionId": ("InvalidParameterValue.SessionIdTooLong", Chars(max_chars=50)),
    "ProcessImageAsyncRequest.SessionContext": (
        "InvalidParameterValue.SessionContextTooLong", Chars(max_chars=1000)),
    "ProcessImageAsyncOutputConfig.MediaName": (None, Chars(max_chars=64)),
    # The media library (ApplyUpload, PullUpload)
    "ApplyUploadRequest.SourceContext": (None, Chars(max_chars=250)),
    "ApplyUploadRequest.SessionContext": ("InvalidParameterValue.SessionContextTooLong", Chars(max_chars=1000)),
    "PullUploadRequest.SourceContext": (None, Chars(max_chars=250)),
    "PullUploadRequest.SessionContext": ("InvalidParameterValue.SessionContextTooLong", Chars(max_chars=1000)),
    "PullUploadRequest.SessionId": ("InvalidParameterValue.SessionIdTooLong", Chars(max_chars=50)),
    "PullUploadRequest.TasksPriority": (None, Between(-10, 10)),
    # Events
    "ConfirmEventsRequest.EventHandles": (None, MaxItems(16)),
    "ModifyEventConfigRequest.Mode": (None, OneOf(("PUSH", "PULL"))),
    # "由大小写字母及数字组成，最长32字符"; an empty SignKey removes the key (no T and Sign).
    "ModifyEventConfigRequest.SignKey": (None, Chars(max_chars=32, alphanumeric=True)),
    # ours: the spec gives no limit; 1024 characters hold any real callback URL.
    "ModifyEventConfigRequest.NotificationUrl": (None, Chars(max_chars=1024)),
    "ModifyEventConfigRequest.UploadMediaCompleteEventSwitch": (None, ON_OFF),
    "ModifyEventConfigRequest.DeleteMediaCompleteEventSwitch": (None, ON_OFF),
    "ModifyEventConfigRequest.PersistenceCompleteEventSwitch": (None, ON_OFF),
}


def rule_for(struct: str, member: str) -> tuple[str, Rule] | None:
    """The rule of ``struct.member`` and the error code it raises, or None."""
    entry = RULES.get(f"{struct}.{member}") or RULES.get(f"*.{member}")
    if entry is None:
        return None
    code, rule = entry
    return (code or value_error_code(member)), rule


@lru_cache(maxsize=None)
def value_error_code(member: str) -> str:
    """``InvalidParameterValue.<member>`` where the error-code lists have it, else the generic code."""
    specific = f"InvalidParameterValue.{member}"
    return specific if specific in error_codes() else "InvalidParameterValue"


def _short(value) -> str:
    """A bounded rendering of a client's value for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def rules_table() -> str:
    """The rules as a Markdown table, for the documentation:
    ``python -c "from vodimg.validation.rules import rules_table; print(rules_table())"``."""
    lines = ["| parameter | allowed | error code |", "|---|---|---|"]
    for key, (code, rule) in RULES.items():
        struct, member = key.split(".")
        lines.append(f"| `{key}` | {rule.describe()} | `{code or value_error_code(member)}` |")
    return "\n".join(lines)
