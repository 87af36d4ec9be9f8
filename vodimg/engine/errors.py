"""Errors of the image engine. The engine knows nothing of the API: the caller maps these."""


class EngineError(Exception):
    """Base class: the image could not be processed. ``str(err)`` is one line a person can act on."""


class InvalidImage(EngineError):
    """The bytes are not a decodable image (corrupt, truncated, unknown format)."""


class UnsupportedImage(EngineError):
    """A valid image the engine refuses by policy (for example: animation is not supported)."""


class LimitExceeded(EngineError):
    """A configured limit (file size, input or output pixels) was exceeded."""


class ProcessingTimeout(EngineError):
    """The per-image time limit ran out."""


class InvalidConfig(EngineError):
    """The configuration names something the engine cannot do (for example an unknown beauty Type)."""
