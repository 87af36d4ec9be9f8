"""``vodimg accounts``: create accounts, applications and API keys; list them. Prints JSON.

The database is ``--database-url`` (env VODIMG_DATABASE_URL), else the SQLite file under
``--data-dir`` (env VODIMG_DATA_DIR, default ``./data``), migrated before use. Errors print
``{"Error": {"Code", "Message"}}`` on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

DEFAULT_DATA_DIR = "./data"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "accounts",
        help="manage accounts, applications and API keys",
        description="Manage accounts (AppId), applications (SubAppId) and API keys. Prints JSON.",
    )
    actions = parser.add_subparsers(dest="accounts_action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="a new account with its default application and one key")
    add_app = actions.add_parser("add-app", help="a new application of an account")
    add_app.add_argument("--app-id", type=int, required=True, help="the account's AppId")
    add_app.add_argument("--name", default="", help="the application's name")
    add_key = actions.add_parser("add-key", help="a new API key of an account")
    add_key.add_argument("--app-id", type=int, required=True, help="the account's AppId")
    listing = actions.add_parser("list", help="every account with its applications and SecretIds")
    for action in (create, add_app, add_key, listing):
        _add_database_options(action)
        action.set_defaults(handler=run)


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("VODIMG_DATA_DIR", DEFAULT_DATA_DIR),
        help="data directory holding the SQLite database (env VODIMG_DATA_DIR; default ./data)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VODIMG_DATABASE_URL"),
        help="database URL, e.g. postgresql+psycopg://user@host/db (env VODIMG_DATABASE_URL; "
        "default: SQLite under --data-dir)",
    )


def run(args: argparse.Namespace) -> int:
    from vodimg.domain.accounts import AccountService
    from vodimg.errors import ApiError
    from vodimg.storage import Database, sqlite_url

    try:
        db = Database(args.database_url or sqlite_url(pathlib.Path(args.data_dir)))
    except ValueError as exc:
        return _fail("InvalidParameterValue", str(exc))
    try:
        db.migrate()
        result = _perform(AccountService(db), args)
    except ApiError as exc:
        return _fail(exc.code, exc.message)
    finally:
        db.dispose()
    print(json.dumps(result, indent=2))
    return 0


def _perform(service, args: argparse.Namespace):
    action = args.accounts_action
    if action == "create":
        return service.create_account()
    if action == "add-app":
        return service.create_application(args.app_id, args.name)
    if action == "add-key":
        return service.create_key(args.app_id)
    return service.list_accounts()


def _fail(code: str, message: str) -> int:
    print(json.dumps({"Error": {"Code": code, "Message": message}}), file=sys.stderr)
    return 1
