"""The tables, as SQLAlchemy Core metadata.

The migrations in ``vodimg/storage/migrations/versions`` create exactly this schema (a test compares
them); change both together. Timestamps are ISO 8601 UTC strings (``2026-01-20T03:02:33Z``): the
API's own format, sortable as text, and no conversion on the hot path.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Next-value counters shared by every application (e.g. template Definitions, never reused).
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
TEMPLATE_DEFINITION_COUNTER = "template_definition"

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("app_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("is_default", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(20), nullable=False),
    # At most one default account (the one --no-auth and first start use).
    sa.Index(
        "ux_accounts_default",
        "is_default",
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("secret_id", sa.String(64), primary_key=True),
    sa.Column("secret_key", sa.String(64), nullable=False),
    sa.Column("app_id", sa.BigInteger, sa.ForeignKey("accounts.app_id"), nullable=False, index=True),
    sa.Column("created_at", sa.String(20), nullable=False),
)

applications = sa.Table(
    "applications",
    metadata,
    sa.Column("sub_app_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("app_id", sa.BigInteger, sa.ForeignKey("accounts.app_id"), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False),
    # Custom templates currently held: reserved atomically against the quota on create.
    sa.Column("template_count", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(20), nullable=False),
    # Bumped in the same transaction as every create, modify and delete of the application's
    # templates: a process's cached copy of them is current while this has not changed.
    sa.Column("templates_version", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    # Each account has exactly one default application.
    sa.Index(
        "ux_applications_default",
        "app_id",
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    ),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("definition", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column(
        "sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("configure", sa.Text, nullable=False),  # ProcessImageConfigure as JSON text
    sa.Column("create_time", sa.String(20), nullable=False),
    sa.Column("update_time", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # bumped by every modification
    sa.Index("ix_templates_app_definition", "sub_app_id", "definition"),
)
