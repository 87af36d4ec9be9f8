"""Accounts, API keys, applications, image async processing templates, counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Custom template Definitions start at 10000 (below are system presets); the counter holds the
# last one issued.
FIRST_CUSTOM_DEFINITION = 10000


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "template_definition", "value": FIRST_CUSTOM_DEFINITION - 1}])

    op.create_table(
        "accounts",
        sa.Column("app_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(20), nullable=False),
    )
    op.create_index(
        "ux_accounts_default",
        "accounts",
        ["is_default"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )

    op.create_table(
        "api_keys",
        sa.Column("secret_id", sa.String(64), primary_key=True),
        sa.Column("secret_key", sa.String(64), nullable=False),
        sa.Column("app_id", sa.BigInteger, sa.ForeignKey("accounts.app_id"), nullable=False),
        sa.Column("created_at", sa.String(20), nullable=False),
    )
    op.create_index("ix_api_keys_app_id", "api_keys", ["app_id"])

    op.create_table(
        "applications",
        sa.Column("sub_app_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("app_id", sa.BigInteger, sa.ForeignKey("accounts.app_id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("template_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(20), nullable=False),
    )
    op.create_index("ix_applications_app_id", "applications", ["app_id"])
    op.create_index(
        "ux_applications_default",
        "applications",
        ["app_id"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )

    op.create_table(
        "templates",
        sa.Column("definition", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column(
            "sub_app_id",
            sa.BigInteger,
            sa.ForeignKey("applications.sub_app_id"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("configure", sa.Text, nullable=False),
        sa.Column("create_time", sa.String(20), nullable=False),
        sa.Column("update_time", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_templates_app_definition", "templates", ["sub_app_id", "definition"])


def downgrade() -> None:
    for table in ("templates", "applications", "api_keys", "accounts", "counters"):
        op.drop_table(table)
