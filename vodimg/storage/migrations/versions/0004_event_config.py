"""event_config: each application's event delivery mode, URL, key and switches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_config",
        sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), primary_key=True,
                  autoincrement=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("notification_url", sa.Text, nullable=False),
        sa.Column("sign_key", sa.String(32), nullable=False),
        sa.Column("upload_media_complete", sa.Boolean, nullable=False),
        sa.Column("delete_media_complete", sa.Boolean, nullable=False),
        sa.Column("persistence_complete", sa.Boolean, nullable=False),
        sa.Column("update_time", sa.String(20), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_config")
