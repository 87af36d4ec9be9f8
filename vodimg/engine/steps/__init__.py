"""Pipeline steps, one module per capability.

Contract for every step module: a function

    apply(frame: Frame, options: dict, ctx: StepContext) -> Frame

``options`` is the capability's object exactly as the API spells it (for example
``{"Switch": "ON", "Intensity": 0.5}`` for SharpEnhance), already validated for types and
ranges; the step applies its own documented defaults for members left out. The pipeline calls
a step only when its Switch is ON. Steps are pure (no I/O, no globals mutated, deterministic:
the same input and options give the same pixels) and may load packaged model weights once,
lazily, from ``vodimg/engine/weights`` or an installed package, never from the network.

Optional hooks: ``check(options)`` raises ``InvalidConfig`` before any pixel is decoded (the
pipeline calls it first), and ``superres.apply_advanced`` serves AdvancedSuperResolution.
"""

from vodimg.engine.errors import InvalidConfig


def chosen_type(options: dict, capability: str, allowed, default: str) -> str:
    """The capability's ``Type`` (``default`` when left out), refused unless it is ``allowed``."""
    kind = options.get("Type") or default
    if kind not in allowed:
        names = list(allowed)
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise InvalidConfig(f"{capability}.Type must be {listed}, not {kind!r}")
    return kind
