"""events.last_error: why the last PUSH delivery of an event failed (for the operator's log and
the next attempt's message).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("last_error", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("events", "last_error")
