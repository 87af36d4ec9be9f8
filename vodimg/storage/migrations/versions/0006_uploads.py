"""upload_sessions (ApplyUpload/CommitUpload), multipart_uploads and multipart_parts (the COS endpoint).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("session_id", sa.String(32), primary_key=True),
        sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
        sa.Column("session_secret", sa.String(64), nullable=False),
        sa.Column("temp_secret_id", sa.String(64), nullable=False, unique=True),
        sa.Column("temp_secret_key", sa.String(64), nullable=False),
        sa.Column("temp_token", sa.String(128), nullable=False),
        sa.Column("storage_path", sa.Text, nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("media_name", sa.Text, nullable=False),
        sa.Column("class_id", sa.BigInteger, nullable=False),
        sa.Column("source_context", sa.Text, nullable=False),
        sa.Column("session_context", sa.Text, nullable=False),
        sa.Column("media_expire_time", sa.String(20), nullable=True),
        sa.Column("object_key", sa.Text, nullable=True),
        sa.Column("object_size", sa.BigInteger, nullable=True),
        sa.Column("object_md5", sa.String(32), nullable=True),
        sa.Column("file_id", sa.String(19), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_upload_sessions_expires", "upload_sessions", ["expires_ms"])
    op.create_table(
        "multipart_uploads",
        sa.Column("upload_id", sa.String(32), primary_key=True),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_multipart_uploads_session", "multipart_uploads", ["session_id"])
    op.create_table(
        "multipart_parts",
        sa.Column("upload_id", sa.String(32), primary_key=True),
        sa.Column("part_number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("multipart_parts")
    op.drop_index("ix_multipart_uploads_session", table_name="multipart_uploads")
    op.drop_table("multipart_uploads")
    op.drop_index("ix_upload_sessions_expires", table_name="upload_sessions")
    op.drop_table("upload_sessions")
