"""Alembic environment: online only, on the connection ``Database.migrate()`` hands over.

The connection is already inside a transaction holding the migration lock, so every revision
runs in it and the upgrade commits (or rolls back) as a whole. Unqualified table names follow the
connection's ``search_path`` on PostgreSQL, so a non-public schema works, version table included.
"""

from alembic import context

from vodimg.storage.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: later revisions use batch operations (copy and move).
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
