"""``vodimg accounts`` sub-commands, run through their argparse registration."""

from __future__ import annotations

import argparse
import json

import pytest

from vodimg.cli import accounts as accounts_cli
from vodimg.domain.accounts import AccountService
from vodimg.storage import Database, sqlite_url


def _run(argv: list[str], capsys) -> tuple[int, object, str]:
    """(exit status, parsed JSON stdout or None, stderr)."""
    parser = argparse.ArgumentParser(prog="vodimg")
    accounts_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["accounts", *argv])
    status = args.handler(args)
    out, err = capsys.readouterr()
    return status, json.loads(out) if out.strip() else None, err


@pytest.fixture
def database_args(database_url) -> list[str]:
    return ["--database-url", database_url]


def test_create_add_app_add_key_and_list(database_args, database_url, capsys):
    status, created, _ = _run(["create", *database_args], capsys)
    assert status == 0 and set(created) == {"AppId", "SubAppId", "SecretId", "SecretKey"}
    app_id = created["AppId"]

    status, app, _ = _run(["add-app", "--app-id", str(app_id), "--name", "photos", *database_args], capsys)
    assert status == 0 and app["AppId"] == app_id
    status, key, _ = _run(["add-key", "--app-id", str(app_id), *database_args], capsys)
    assert status == 0 and key["AppId"] == app_id

    status, listed, _ = _run(["list", *database_args], capsys)
    assert status == 0 and [a["AppId"] for a in listed] == [app_id]
    assert {a["SubAppId"] for a in listed[0]["Applications"]} == {created["SubAppId"], app["SubAppId"]}
    assert sorted(listed[0]["SecretIds"]) == sorted([created["SecretId"], key["SecretId"]])

    # What the CLI stored is what the service sees.
    db = Database(database_url)
    try:
        service = AccountService(db)
        assert service.credential_for(key["SecretId"]).secret_key == key["SecretKey"]
        assert service.resolve_sub_app(app_id, app["SubAppId"]) == app["SubAppId"]
    finally:
        db.dispose()


def test_unknown_account_is_a_json_error_with_status_1(database_args, capsys):
    status, out, err = _run(["add-key", "--app-id", "1250000001", *database_args], capsys)
    assert status == 1 and out is None
    assert json.loads(err)["Error"]["Code"] == "ResourceNotFound"


def test_bad_database_url_is_a_json_error(capsys):
    status, _, err = _run(["list", "--database-url", "mysql://x@y/z"], capsys)
    assert status == 1 and "unsupported database URL" in json.loads(err)["Error"]["Message"]


def test_data_dir_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VODIMG_DATABASE_URL", raising=False)
    monkeypatch.setenv("VODIMG_DATA_DIR", str(tmp_path / "env-data"))
    status, created, _ = _run(["create"], capsys)
    assert status == 0
    assert (tmp_path / "env-data" / "vodimg.db").is_file()
    db = Database(sqlite_url(tmp_path / "env-data"))
    try:
        assert AccountService(db).credential_for(created["SecretId"]).app_id == created["AppId"]
    finally:
        db.dispose()


def test_default_data_dir_is_dot_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VODIMG_DATABASE_URL", raising=False)
    monkeypatch.delenv("VODIMG_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    status, listed, _ = _run(["list"], capsys)
    assert status == 0 and listed == []
    assert (tmp_path / "data" / "vodimg.db").is_file()


def test_the_installed_command_runs_end_to_end(tmp_path):
    import subprocess
    import sys

    env_free = {"PATH": "/usr/bin:/bin", "VODIMG_DATA_DIR": str(tmp_path / "d")}
    run = lambda *argv: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "vodimg", "accounts", *argv],
        capture_output=True, text=True, timeout=120, env=env_free,
    )
    created = run("create")
    assert created.returncode == 0, created.stderr
    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["AppId"] == json.loads(created.stdout)["AppId"]
    failed = run("add-app", "--app-id", "1")
    assert failed.returncode == 1 and json.loads(failed.stderr)["Error"]["Code"] == "ResourceNotFound"
