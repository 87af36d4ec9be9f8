"""The queue's index in the claim's order: WAITING tasks by priority DESCENDING, then seq
ascending. The index of 0003 ran both ascending, which no scan can read in the claim's mixed order
(``ORDER BY priority DESC, seq``): PostgreSQL sorted every WAITING task on each claim (a Seq Scan
and Sort, measured at 20000 WAITING tasks in bench/scaling.py); now the claim reads one index entry.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_WAITING = sa.text("status = 'WAITING'")


def upgrade() -> None:
    op.drop_index("ix_tasks_waiting", "tasks")
    op.create_index("ix_tasks_waiting", "tasks", [sa.text("priority DESC"), "seq"],
                    sqlite_where=_WAITING, postgresql_where=_WAITING)


def downgrade() -> None:
    op.drop_index("ix_tasks_waiting", "tasks")
    op.create_index("ix_tasks_waiting", "tasks", ["priority", "seq"], sqlite_where=_WAITING, postgresql_where=_WAITING)
