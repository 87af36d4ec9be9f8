"""Metadata storage: SQLite (embedded default) or PostgreSQL (scale-out), one schema via Alembic."""

from vodimg.storage.db import Database, sqlite_url

__all__ = ["Database", "sqlite_url"]
