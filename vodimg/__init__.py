"""vodimg: a self-hostable, wire-compatible Tencent Cloud VOD image async processing service."""

__version__ = "0.1.0"
