"""Upload sessions and the sweeper on SQLite and PostgreSQL, through the domain services (the
COS protocol itself is tested end to end in tests/e2e/test_media_sdk.py)."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.e2e.tasks import small_photo_jpeg
from vodimg.config import Settings
from vodimg.domain.accounts import AccountService
from vodimg.domain.uploads import CosError
from vodimg.services import build_services
from vodimg.storage.schema import media, multipart_parts, multipart_uploads, upload_sessions
from vodimg.worker.maintenance import UPLOAD_GRACE_MS, Maintenance


@pytest.fixture
def services(database, tmp_path):
    settings = Settings.from_env_and_args(None, env={})
    settings.data_dir = tmp_path / "data"
    return build_services(settings, database)


@pytest.fixture
def app(services) -> int:
    return AccountService(services.database).create_account()["SubAppId"]


def _session(services, applied: dict):
    return services.cos_uploads.session_for(applied["TempCertificate"]["SecretId"])


def _end_sessions(services) -> None:
    with services.database.write() as conn:
        conn.execute(upload_sessions.update().values(expires_ms=int(time.time() * 1000) - UPLOAD_GRACE_MS - 1))


def _keys(services) -> list[str]:
    return [item.key for item in services.store.list("")]


def _count(services, table) -> int:
    with services.database.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_the_sweeper_removes_what_ended_sessions_left_and_keeps_committed_bytes(services, app):
    library, cos = services.library, services.cos_uploads
    committed = library.apply(app, {"MediaType": "jpg"})
    cos.put_object(_session(services, committed), [small_photo_jpeg()], None)
    file_id = library.commit(app, committed["VodSessionKey"])["FileId"]
    abandoned = library.apply(app, {"MediaType": "png"})
    session = _session(services, abandoned)
    cos.put_object(session, [b"half a photo"], None)
    upload_id = cos.initiate(session)
    cos.upload_part(session, upload_id, 1, [b"p" * 1000], None)
    assert len(_keys(services)) == 3 and _count(services, multipart_parts) == 1

    maintenance = Maintenance(services.database, services.store, services.queue, {}, session_window_ms=1000)
    assert maintenance.sweep()["uploads"] == 0  # nothing ended yet
    _end_sessions(services)
    assert maintenance.sweep()["uploads"] == 2
    [kept] = _keys(services)
    assert services.media.get(app, file_id).storage_key == kept
    assert [_count(services, table) for table in (upload_sessions, multipart_uploads, multipart_parts)] == [0, 0, 0]


def test_the_sweeper_removes_expired_media_and_their_bytes(services, app):
    library = services.library
    soon = (datetime.now(timezone.utc) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    applied = library.apply(app, {"MediaType": "jpg", "ExpireTime": soon})
    services.cos_uploads.put_object(_session(services, applied), [small_photo_jpeg()], None)
    file_id = library.commit(app, applied["VodSessionKey"])["FileId"]
    time.sleep(1.2)
    assert services.media.get(app, file_id) is None  # hidden at once, before the sweep
    maintenance = Maintenance(services.database, services.store, services.queue, {}, session_window_ms=1000)
    assert maintenance.sweep()["media"] == 1
    assert _count(services, media) == 0 and _keys(services) == []


def test_a_put_after_commit_is_refused_and_stores_nothing(services, app):
    library, cos = services.library, services.cos_uploads
    applied = library.apply(app, {"MediaType": "jpg"})
    cos.put_object(_session(services, applied), [small_photo_jpeg()], None)
    library.commit(app, applied["VodSessionKey"])
    before = _keys(services)
    with pytest.raises(CosError) as refused:
        cos.put_object(_session(services, applied), [b"replacement"], None)
    assert refused.value.code == "AccessDenied" and _keys(services) == before


def test_a_body_over_the_limit_stops_while_streaming(services, app):
    applied = services.library.apply(app, {"MediaType": "jpg"})
    sent = []

    def endless():
        while True:
            sent.append(1)
            yield b"\0" * 65536

    with pytest.raises(CosError) as refused:
        services.cos_uploads.put_object(_session(services, applied), endless(), None)
    assert refused.value.code == "EntityTooLarge" and _keys(services) == []
    assert len(sent) * 65536 <= services.max_input_bytes + 65536  # read no further than the limit


@pytest.mark.postgres
def test_two_uploads_of_one_part_at_once_both_succeed_and_the_later_wins(postgres_url, tmp_path):
    """On PostgreSQL the second upload's insert meets the first's uncommitted row: once that
    commits, the second is recorded over it (no error), and the replaced part's object goes."""
    from vodimg.storage import Database

    database = Database(postgres_url)
    database.migrate()
    try:
        settings = Settings.from_env_and_args(None, env={})
        settings.data_dir = tmp_path / "data"
        services = build_services(settings, database)
        app = AccountService(database).create_account()["SubAppId"]
        session = _session(services, services.library.apply(app, {"MediaType": "png"}))
        cos = services.cos_uploads
        upload_id = cos.initiate(session)
        first_key = f"{session.prefix}parts/{upload_id}/1-first"
        services.store.put(first_key, b"first" * 300)
        outcome = {}

        def second_upload() -> None:
            try:
                outcome["etag"] = cos.upload_part(session, upload_id, 1, [b"second" * 300], None)
            except Exception as error:  # noqa: BLE001 - the test reports it
                outcome["error"] = error

        with database.write() as conn:  # the first upload's transaction, not yet committed
            conn.execute(multipart_parts.insert().values(upload_id=upload_id, part_number=1, object_key=first_key,
                                                         size=1500, etag="0" * 32, created_ms=0))
            thread = threading.Thread(target=second_upload)
            thread.start()
            time.sleep(0.5)  # the second upload now waits on the first's row
        thread.join(10)
        assert "error" not in outcome, outcome
        [part] = cos.list_parts(session, upload_id)
        assert part.etag == outcome["etag"] == hashlib.md5(b"second" * 300).hexdigest()
        assert first_key not in _keys(services)
    finally:
        database.dispose()
