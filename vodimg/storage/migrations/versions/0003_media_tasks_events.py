"""media, tasks (the queue), task_sessions (SessionId dedup) and events (the outbox).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("file_id", sa.String(19), primary_key=True),
        sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("class_id", sa.BigInteger, nullable=False),
        sa.Column("source_type", sa.String(32), nullable=False),
        sa.Column("source_context", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("container", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.Text, nullable=False),
        sa.Column("create_time", sa.String(20), nullable=False),
        sa.Column("update_time", sa.String(20), nullable=False),
        sa.Column("expire_time", sa.String(20), nullable=True),
    )
    op.create_index("ix_media_app", "media", ["sub_app_id", "file_id"])
    op.create_index("ix_media_expire", "media", ["expire_time"])

    op.create_table(
        "tasks",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(128), nullable=False, unique=True),
        sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("input_file_id", sa.String(19), nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("configure", sa.Text, nullable=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("session_context", sa.Text, nullable=False),
        sa.Column("ext_info", sa.Text, nullable=False),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("err_code", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger, nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("create_time", sa.String(20), nullable=False),
        sa.Column("begin_process_time", sa.String(20), nullable=True),
        sa.Column("finish_time", sa.String(20), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_tasks_app_seq", "tasks", ["sub_app_id", "seq"])
    op.create_index("ix_tasks_app_finish", "tasks", ["sub_app_id", "finish_time", "seq"])
    op.create_index("ix_tasks_status_lease", "tasks", ["status", "lease_until_ms"])
    op.create_index("ix_tasks_created", "tasks", ["created_ms"])
    op.create_index("ix_tasks_waiting", "tasks", ["priority", "seq"],
                    sqlite_where=sa.text("status = 'WAITING'"), postgresql_where=sa.text("status = 'WAITING'"))

    op.create_table(
        "task_sessions",
        sa.Column("sub_app_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(128), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_task_sessions_created", "task_sessions", ["created_ms"])

    op.create_table(
        "events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("ready_at_ms", sa.BigInteger, nullable=False),
        sa.Column("handle", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_events_ready", "events", ["sub_app_id", "ready_at_ms", "seq"])
    op.create_index("ix_events_handle", "events", ["handle"])
    op.create_index("ix_events_created", "events", ["created_ms"])


def downgrade() -> None:
    for table in ("events", "task_sessions", "tasks", "media"):
        op.drop_table(table)
