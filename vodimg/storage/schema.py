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

# -- media, tasks and events (migration 0003) -------------------------------------------------------
# Times the queue compares are integers of milliseconds since the epoch (``*_ms``); times the API
# shows stay ISO strings.

media = sa.Table(
    "media",
    metadata,
    sa.Column("file_id", sa.String(19), primary_key=True),  # 19 digits, not guessable
    sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # the extension: jpg, png, webp, bmp, ...
    sa.Column("class_id", sa.BigInteger, nullable=False),
    sa.Column("source_type", sa.String(32), nullable=False),
    sa.Column("source_context", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("container", sa.String(16), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("md5", sa.String(32), nullable=False),
    sa.Column("content_type", sa.String(64), nullable=False),
    sa.Column("storage_key", sa.Text, nullable=False),  # the object store key of the bytes
    sa.Column("create_time", sa.String(20), nullable=False),
    sa.Column("update_time", sa.String(20), nullable=False),
    sa.Column("expire_time", sa.String(20), nullable=True),  # None: never expires
    sa.Index("ix_media_app", "sub_app_id", "file_id"),
    sa.Index("ix_media_expire", "expire_time"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    # Creation order: DescribeTasks pages by it, and the queue takes the oldest first.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(128), nullable=False, unique=True),
    sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
    sa.Column("task_type", sa.String(32), nullable=False),  # ProcessImageAsync, PullUpload
    sa.Column("status", sa.String(16), nullable=False),  # WAITING, PROCESSING, FINISH
    sa.Column("priority", sa.Integer, nullable=False),  # higher first
    sa.Column("input_file_id", sa.String(19), nullable=True),  # DescribeTasks' FileId filter
    sa.Column("source", sa.Text, nullable=False),  # JSON: where the input comes from
    sa.Column("input", sa.Text, nullable=False),  # JSON: the task's Input member as shown
    sa.Column("configure", sa.Text, nullable=True),  # JSON: the template's snapshot
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("session_context", sa.Text, nullable=False),
    sa.Column("ext_info", sa.Text, nullable=False),
    sa.Column("progress", sa.Integer, nullable=False),
    sa.Column("err_code", sa.Integer, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("output", sa.Text, nullable=True),  # JSON: the Output member once finished
    sa.Column("attempt", sa.Integer, nullable=False),  # fencing token: +1 on every claim
    sa.Column("failures", sa.Integer, nullable=False),  # attempts lost to crashes and expired leases
    sa.Column("lease_until_ms", sa.BigInteger, nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("create_time", sa.String(20), nullable=False),
    sa.Column("begin_process_time", sa.String(20), nullable=True),
    sa.Column("finish_time", sa.String(20), nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_tasks_app_seq", "sub_app_id", "seq"),
    sa.Index("ix_tasks_app_finish", "sub_app_id", "finish_time", "seq"),
    sa.Index("ix_tasks_status_lease", "status", "lease_until_ms"),
    sa.Index("ix_tasks_created", "created_ms"),
    # The queue: WAITING tasks by priority, then age (partial: few rows, cheap to sort).
    sa.Index(
        "ix_tasks_waiting",
        "priority",
        "seq",
        sqlite_where=sa.text("status = 'WAITING'"),
        postgresql_where=sa.text("status = 'WAITING'"),
    ),
)

# A SessionId is refused while another task of the application holds it (3 days by default):
# the primary key makes the check a constraint, not a read-then-write race.
task_sessions = sa.Table(
    "task_sessions",
    metadata,
    sa.Column("sub_app_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(128), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_task_sessions_created", "created_ms"),
)

# The outbox: one row per event, written in the transaction of the change it reports.
events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # JSON: the EventContent without EventHandle
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("ready_at_ms", sa.BigInteger, nullable=False),  # not handed out again before this
    sa.Column("handle", sa.String(64), nullable=True),  # the EventHandle of the current lease
    sa.Column("attempts", sa.Integer, nullable=False),  # leases so far (PullEvents or PUSH posts)
    sa.Column("last_error", sa.Text, nullable=True),  # why the last PUSH post failed (migration 0005)
    sa.Index("ix_events_ready", "sub_app_id", "ready_at_ms", "seq"),
    sa.Index("ix_events_handle", "handle"),
    sa.Index("ix_events_created", "created_ms"),
)

# Each application's event configuration (ModifyEventConfig / DescribeEventConfig); an application
# without a row has the defaults: PULL, no URL, no key, every switch OFF.
event_config = sa.Table(
    "event_config",
    metadata,
    sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), primary_key=True,
              autoincrement=False),
    sa.Column("mode", sa.String(8), nullable=False),  # PULL or PUSH
    sa.Column("notification_url", sa.Text, nullable=False),
    sa.Column("sign_key", sa.String(32), nullable=False),
    sa.Column("upload_media_complete", sa.Boolean, nullable=False),  # UploadMediaCompleteEventSwitch
    sa.Column("delete_media_complete", sa.Boolean, nullable=False),  # DeleteMediaCompleteEventSwitch
    sa.Column("persistence_complete", sa.Boolean, nullable=False),  # PersistenceCompleteEventSwitch
    sa.Column("update_time", sa.String(20), nullable=False),
)

# -- uploads (migration 0006) -------------------------------------------------------------------------
# One ApplyUpload: its temporary COS credential, what CommitUpload will create, and the object the
# COS endpoint stored for it (``object_key``: a fresh key per PUT or completed multipart upload,
# under ``uploads/<session_id>/``, so a second PUT never overwrites bytes being read).
upload_sessions = sa.Table(
    "upload_sessions",
    metadata,
    sa.Column("session_id", sa.String(32), primary_key=True),  # the 32 hex of MediaStoragePath
    sa.Column("sub_app_id", sa.BigInteger, sa.ForeignKey("applications.sub_app_id"), nullable=False),
    sa.Column("session_secret", sa.String(64), nullable=False),  # the VodSessionKey's secret part
    sa.Column("temp_secret_id", sa.String(64), nullable=False, unique=True),
    sa.Column("temp_secret_key", sa.String(64), nullable=False),
    sa.Column("temp_token", sa.String(128), nullable=False),
    sa.Column("storage_path", sa.Text, nullable=False),  # the COS object key (MediaStoragePath without /)
    sa.Column("media_type", sa.String(16), nullable=False),
    sa.Column("media_name", sa.Text, nullable=False),
    sa.Column("class_id", sa.BigInteger, nullable=False),
    sa.Column("source_context", sa.Text, nullable=False),
    sa.Column("session_context", sa.Text, nullable=False),
    sa.Column("media_expire_time", sa.String(20), nullable=True),  # the media's ExpireTime
    sa.Column("object_key", sa.Text, nullable=True),  # what PUT/CompleteMultipartUpload stored
    sa.Column("object_size", sa.BigInteger, nullable=True),
    sa.Column("object_md5", sa.String(32), nullable=True),
    sa.Column("file_id", sa.String(19), nullable=True),  # set once, by CommitUpload
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),  # credential and VodSessionKey end
    sa.Index("ix_upload_sessions_expires", "expires_ms"),
)

# COS multipart uploads in progress; their parts are objects under uploads/<session_id>/parts/.
multipart_uploads = sa.Table(
    "multipart_uploads",
    metadata,
    sa.Column("upload_id", sa.String(32), primary_key=True),
    sa.Column("session_id", sa.String(32), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_multipart_uploads_session", "session_id"),
)

multipart_parts = sa.Table(
    "multipart_parts",
    metadata,
    sa.Column("upload_id", sa.String(32), primary_key=True),
    sa.Column("part_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("object_key", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(32), nullable=False),  # the part's MD5, hex
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
