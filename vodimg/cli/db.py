"""``vodimg db``: the database schema. ``vodimg db upgrade`` applies the migrations (Alembic) that
the database lacks and prints the revision it is at; ``vodimg db current`` only prints it.

``vodimg serve`` and ``vodimg worker`` also upgrade on start (safe when processes race: one
advisory lock), so running ``upgrade`` first is for deployments that upgrade as a separate step
(before starting the new version's processes) or that run the service without DDL rights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vodimg.config import ConfigError, Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("db", help="database schema: upgrade, current revision",
                                   description="Manage the schema of vodimg's database.")
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    for name, text in (("upgrade", "apply the migrations the database lacks (idempotent)"),
                       ("current", "print the database's schema revision")):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--data-dir", type=Path, help="data directory (VODIMG_DATA_DIR, default ./data)")
        command.add_argument("--database-url", help="the database (VODIMG_DATABASE_URL, default SQLite "
                                                    "in the data directory)")
        command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vodimg.storage.db import Database, sqlite_url

    try:
        settings = Settings.from_env_and_args(args)
        database = Database(settings.database_url or sqlite_url(settings.data_dir))
    except (ConfigError, ValueError) as error:
        print(f"vodimg db: {error}", file=sys.stderr)
        return 2
    try:
        before = revision(database)
        if args.db_command == "upgrade":
            database.migrate()
            after = revision(database)
            print(f"vodimg db: at revision {after}" + ("" if after == before else f" (was {before or 'empty'})"))
        else:
            print(before or "empty (no vodimg schema yet: `vodimg db upgrade` creates it)")
    except Exception as error:  # noqa: BLE001 - connection and permission errors, told plainly
        print(f"vodimg db: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
              file=sys.stderr)
        return 1
    finally:
        database.dispose()
    return 0


def revision(database) -> str | None:
    """The Alembic revision the database is at, None when it has no vodimg schema."""
    from alembic.runtime.migration import MigrationContext

    with database.read() as conn:
        return MigrationContext.configure(conn).get_current_revision()
