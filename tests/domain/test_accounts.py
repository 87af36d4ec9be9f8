"""AccountService on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading

import pytest

from vodimg.domain.accounts import AccountService, Credential
from vodimg.errors import ApiError
from vodimg.storage import Database
from tests.storage.fixtures import StatementCounter

SECRET_ID = re.compile(r"AKID[A-Za-z0-9]{32}")
SECRET_KEY = re.compile(r"[A-Za-z0-9]{32}")


@pytest.fixture
def service(database) -> AccountService:
    return AccountService(database)


def _in_parallel(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads released together; results (or exceptions) by i."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_created_ids_look_like_the_real_ones(service):
    created = service.create_account()
    assert set(created) == {"AppId", "SubAppId", "SecretId", "SecretKey"}
    assert 1_250_000_000 <= created["AppId"] < 1_260_000_000
    assert 1_500_000_000 <= created["SubAppId"] < 1_600_000_000
    assert SECRET_ID.fullmatch(created["SecretId"])
    assert SECRET_KEY.fullmatch(created["SecretKey"])
    other = service.create_account()
    assert other["AppId"] != created["AppId"] and other["SecretKey"] != created["SecretKey"]


def test_credential_for_finds_keys_and_answers_none_for_unknown(service):
    created = service.create_account()
    extra = service.create_key(created["AppId"])
    assert service.credential_for(created["SecretId"]) == Credential(
        created["SecretId"], created["SecretKey"], created["AppId"]
    )
    assert service.credential_for(extra["SecretId"]) == Credential(
        extra["SecretId"], extra["SecretKey"], created["AppId"]
    )
    assert service.credential_for("AKID" + "x" * 32) is None


def test_credential_for_is_cached_after_the_first_lookup(database, service):
    created = service.create_account()
    statements = StatementCounter(database.engine)
    service.credential_for(created["SecretId"])
    after_first = statements.count
    for _ in range(5):
        assert service.credential_for(created["SecretId"]).app_id == created["AppId"]
    assert after_first >= 1 and statements.count == after_first


def test_a_key_created_elsewhere_is_seen_at_once(database, service):
    assert service.credential_for("AKIDnotyet") is None
    created = AccountService(database).create_account()  # e.g. `vodimg accounts create`
    assert service.credential_for(created["SecretId"]).app_id == created["AppId"]


def test_bootstrap_creates_the_first_key_once(service):
    first = service.bootstrap()
    assert set(first) == {"AppId", "SubAppId", "SecretId", "SecretKey"}
    assert service.bootstrap() is None
    assert service.default_app_id() == first["AppId"]
    assert service.resolve_sub_app(first["AppId"], None) == first["SubAppId"]
    assert service.credential_for(first["SecretId"]).secret_key == first["SecretKey"]


def test_bootstrap_keeps_an_account_created_before_first_start(service):
    created = service.create_account()
    assert service.bootstrap() is None
    assert service.default_app_id() == created["AppId"]


def test_bootstrap_with_configured_key_and_sub_app(database, service):
    assert service.bootstrap("AKIDconfigured", "secret-1", sub_app_id=221073) is None
    app_id = service.default_app_id()
    assert service.credential_for("AKIDconfigured") == Credential("AKIDconfigured", "secret-1", app_id)
    assert service.resolve_sub_app(app_id, None) == 221073
    # A restart with the same settings changes nothing; a new SecretKey replaces the old one.
    assert service.bootstrap("AKIDconfigured", "secret-1", sub_app_id=221073) is None
    restarted = AccountService(database)
    assert restarted.bootstrap("AKIDconfigured", "secret-2", sub_app_id=221073) is None
    assert restarted.credential_for("AKIDconfigured").secret_key == "secret-2"
    assert restarted.default_app_id() == app_id
    assert [a["AppId"] for a in restarted.list_accounts()] == [app_id]


def test_bootstrap_moves_the_default_application_to_the_configured_one(service):
    first = service.bootstrap()
    service.bootstrap(sub_app_id=1_600_000_001)
    assert service.resolve_sub_app(first["AppId"], None) == 1_600_000_001
    # The former default application still belongs to the account.
    assert service.resolve_sub_app(first["AppId"], first["SubAppId"]) == first["SubAppId"]
    defaults = [a for a in service.list_accounts()[0]["Applications"] if a["IsDefault"]]
    assert [a["SubAppId"] for a in defaults] == [1_600_000_001]


def test_bootstrap_refuses_contradictory_settings(service):
    service.bootstrap()
    other = service.create_account()
    with pytest.raises(ValueError, match="together"):
        service.bootstrap("AKIDonly", None)
    with pytest.raises(ValueError, match="belongs to account"):
        service.bootstrap(other["SecretId"], other["SecretKey"])
    with pytest.raises(ValueError, match="belongs to another account"):
        service.bootstrap(sub_app_id=other["SubAppId"])


def test_concurrent_first_starts_create_one_default_account(database):
    results = _in_parallel(4, lambda _: AccountService(database).bootstrap())
    created = [r for r in results if r is not None]
    assert len(created) == 1 and isinstance(created[0], dict), results
    listed = AccountService(database).list_accounts()
    assert [(a["AppId"], a["IsDefault"]) for a in listed] == [(created[0]["AppId"], True)]


def test_default_app_id_creates_a_default_account_without_keys(database, service):
    app_id = service.default_app_id()
    assert AccountService(database).default_app_id() == app_id
    assert service.list_accounts()[0]["SecretIds"] == []
    # A first start afterwards gives that account its key.
    assert service.bootstrap()["AppId"] == app_id


def test_applications_and_keys_need_an_existing_account(service):
    for create in (service.create_application, service.create_key):
        with pytest.raises(ApiError) as error:
            create(1_259_999_999)
        assert error.value.code == "ResourceNotFound"


def test_resolve_sub_app_never_reveals_other_accounts(service):
    mine = service.create_account()
    extra = service.create_application(mine["AppId"], "second")
    theirs = service.create_account()
    assert service.resolve_sub_app(mine["AppId"], None) == mine["SubAppId"]
    assert service.resolve_sub_app(mine["AppId"], extra["SubAppId"]) == extra["SubAppId"]
    errors = []
    for sub_app_id in (theirs["SubAppId"], 1_599_999_998):  # someone else's, nobody's
        with pytest.raises(ApiError) as error:
            service.resolve_sub_app(mine["AppId"], sub_app_id)
        errors.append((error.value.code, error.value.message.replace(str(sub_app_id), "N")))
    assert errors[0] == errors[1] and errors[0][0] == "UnauthorizedOperation"
    with pytest.raises(ApiError) as error:
        service.resolve_sub_app(1_250_000_000 - 1, None)  # no such account
    assert error.value.code == "UnauthorizedOperation"


def test_an_application_created_elsewhere_resolves_at_once(database, service):
    mine = service.create_account()
    with pytest.raises(ApiError):
        service.resolve_sub_app(mine["AppId"], 1_555_555_555)
    extra = AccountService(database).create_application(mine["AppId"])
    assert service.resolve_sub_app(mine["AppId"], extra["SubAppId"]) == extra["SubAppId"]


def test_list_accounts_shows_applications_and_secret_ids_but_no_secret_keys(service):
    first = service.create_account()
    app = service.create_application(first["AppId"], "photos")
    key = service.create_key(first["AppId"])
    second = service.create_account()
    listed = service.list_accounts()
    assert [a["AppId"] for a in listed] == sorted([first["AppId"], second["AppId"]])
    mine = next(a for a in listed if a["AppId"] == first["AppId"])
    assert mine["IsDefault"] is True  # the first account ever created
    assert sorted(mine["SecretIds"]) == sorted([first["SecretId"], key["SecretId"]])
    assert {(a["SubAppId"], a["Name"], a["IsDefault"]) for a in mine["Applications"]} == {
        (first["SubAppId"], "", True),
        (app["SubAppId"], "photos", False),
    }
    assert first["SecretKey"] not in repr(listed)


def test_accounts_persist_across_database_objects(database_url):
    db = Database(database_url)
    db.migrate()
    created = AccountService(db).create_account()
    db.dispose()
    reopened = Database(database_url)
    try:
        service = AccountService(reopened)
        assert service.credential_for(created["SecretId"]).app_id == created["AppId"]
        assert service.resolve_sub_app(created["AppId"], None) == created["SubAppId"]
    finally:
        reopened.dispose()
