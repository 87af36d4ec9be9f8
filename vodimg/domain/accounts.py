"""Accounts (AppId), their API keys (SecretId/SecretKey) and VOD applications (SubAppId).

Identifiers look like the real service's: AppId a 10-digit number from 1250000000, SubAppId a
10-digit number from 1500000000 (both random, so they are not guessable one from another),
SecretId ``AKID`` + 32 letters/digits, SecretKey 32 letters/digits.

The first account ever created is the default account (first start, ``--no-auth``); every account
has exactly one default application, addressed by requests without SubAppId.

Keys and application ownership never change once created (bootstrap may replace the SecretKey of
a key given by environment, before serving), so lookups on the request path are cached in memory;
misses always go to the database, so keys created by another process are seen at once.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

import sqlalchemy as sa

from vodimg.domain.clock import Clock, iso_utc, utc_now
from vodimg.errors import ApiError
from vodimg.storage.db import Database, fits_bigint
from vodimg.storage.schema import accounts, api_keys, applications

APP_ID_RANGE = (1_250_000_000, 1_259_999_999)
SUB_APP_ID_RANGE = (1_500_000_000, 1_599_999_999)
SECRET_ID_PREFIX = "AKID"
SECRET_LENGTH = 32
_ALPHANUMERIC = string.ascii_letters + string.digits
_ID_ATTEMPTS = 20


@dataclass(frozen=True)
class Credential:
    secret_id: str
    secret_key: str
    app_id: int  # the account


def _random_in(bounds: tuple[int, int]) -> int:
    low, high = bounds
    return low + secrets.randbelow(high - low + 1)


def _random_token(length: int = SECRET_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _unauthorized_sub_app(sub_app_id: int | None) -> ApiError:
    # The same answer whether the application exists elsewhere or not at all.
    if sub_app_id is None:
        return ApiError("UnauthorizedOperation", "The account has no default application.")
    return ApiError(
        "UnauthorizedOperation", f"SubAppId {sub_app_id} is not an application of this account."
    )


def _account_not_found(app_id: int) -> ApiError:
    return ApiError("ResourceNotFound", f"Account AppId {app_id} does not exist.")


_SELECT_CREDENTIAL = sa.select(api_keys.c.secret_key, api_keys.c.app_id).where(
    api_keys.c.secret_id == sa.bindparam("secret_id")
)
_SELECT_DEFAULT_SUB_APP = sa.select(applications.c.sub_app_id).where(
    applications.c.app_id == sa.bindparam("app_id"), applications.c.is_default
)
_SELECT_OWNED_SUB_APP = sa.select(applications.c.sub_app_id).where(
    applications.c.app_id == sa.bindparam("app_id"),
    applications.c.sub_app_id == sa.bindparam("sub_app_id"),
)


class AccountService:
    def __init__(self, db: Database, *, clock: Clock = utc_now):
        self._db = db
        self._clock = clock
        self._credentials: dict[str, Credential] = {}
        self._sub_apps: dict[tuple[int, int | None], int] = {}
        self._default_app_id: int | None = None

    # --- request path -------------------------------------------------------------------------

    @property
    def lookups_never_wait(self) -> bool:
        """True when ``credential_for`` and ``resolve_sub_app`` never wait (cached, else a read
        that never waits for a lock): callers may run them on an event loop."""
        return self._db.reads_never_wait

    def credential_for(self, secret_id: str) -> Credential | None:
        """The key's credential, or None for an unknown SecretId."""
        cached = self._credentials.get(secret_id)
        if cached is not None:
            return cached
        with self._db.read() as conn:
            row = conn.execute(_SELECT_CREDENTIAL, {"secret_id": secret_id}).first()
        if row is None:
            return None
        credential = Credential(secret_id, row.secret_key, row.app_id)
        self._credentials[secret_id] = credential
        return credential

    def resolve_sub_app(self, app_id: int, sub_app_id: int | None) -> int:
        """The application a request addresses: ``sub_app_id``, or the account's default one.

        Raises UnauthorizedOperation for an application the account does not own.
        """
        if sub_app_id is not None and not fits_bigint(sub_app_id):
            raise _unauthorized_sub_app(sub_app_id)  # uint64 beyond the column: no application has it
        key = (app_id, sub_app_id)
        cached = self._sub_apps.get(key)
        if cached is not None:
            return cached
        with self._db.read() as conn:
            if sub_app_id is None:
                resolved = conn.execute(_SELECT_DEFAULT_SUB_APP, {"app_id": app_id}).scalar()
            else:
                resolved = conn.execute(
                    _SELECT_OWNED_SUB_APP, {"app_id": app_id, "sub_app_id": sub_app_id}
                ).scalar()
        if resolved is None:
            raise _unauthorized_sub_app(sub_app_id)
        self._sub_apps[key] = resolved
        return resolved

    def default_app_id(self) -> int:
        """The default account's AppId (created, with its default application, if missing)."""
        if self._default_app_id is None:
            with self._db.write() as conn:
                self._db.lock(conn, "vodimg.accounts.bootstrap")
                self._default_app_id = self._default_account(conn) or self._insert_account(
                    conn, sub_app_id=None
                )[0]
        return self._default_app_id

    # --- administration -------------------------------------------------------------------------

    def bootstrap(
        self,
        secret_id: str | None = None,
        secret_key: str | None = None,
        sub_app_id: int | None = None,
    ) -> dict | None:
        """Make the default account usable on first start; see API-INTERFACES.md.

        Returns the created ``{"AppId", "SubAppId", "SecretId", "SecretKey"}`` when it had to make
        the first key itself (print it once), else None. Raises ValueError for contradictory
        configuration (a given SecretId or SubAppId that belongs to another account).
        """
        if (secret_id is None) != (secret_key is None):
            raise ValueError("VODIMG_SECRET_ID and VODIMG_SECRET_KEY must be given together")
        with self._db.write() as conn:
            self._db.lock(conn, "vodimg.accounts.bootstrap")
            app_id = self._default_account(conn)
            if app_id is None:
                app_id, default_sub_app = self._insert_account(conn, sub_app_id)
            elif sub_app_id is not None:
                default_sub_app = self._make_default_application(conn, app_id, sub_app_id)
            else:
                default_sub_app = conn.execute(_SELECT_DEFAULT_SUB_APP, {"app_id": app_id}).scalar_one()
            if secret_id is not None:
                self._ensure_key(conn, app_id, secret_id, secret_key)
                created = None
            elif conn.execute(sa.select(api_keys.c.secret_id).limit(1)).first() is None:
                key = self._insert_key(conn, app_id)
                created = {"AppId": app_id, "SubAppId": default_sub_app, **key}
            else:
                created = None
        self._sub_apps.clear()  # the default application may have changed
        self._default_app_id = app_id
        return created

    def create_account(self) -> dict:
        """A new account with its default application and one key."""
        with self._db.write() as conn:
            self._db.lock(conn, "vodimg.accounts.bootstrap")  # who becomes the default account
            app_id, sub_app_id = self._insert_account(conn, sub_app_id=None)
            key = self._insert_key(conn, app_id)
        return {"AppId": app_id, "SubAppId": sub_app_id, **key}

    def create_application(self, app_id: int, name: str = "") -> dict:
        """A new (non-default) application of an existing account."""
        with self._db.write() as conn:
            self._require_account(conn, app_id)
            sub_app_id = self._insert_application(conn, app_id, name, is_default=False)
        return {"AppId": app_id, "SubAppId": sub_app_id}

    def create_key(self, app_id: int) -> dict:
        """A new API key of an existing account."""
        with self._db.write() as conn:
            self._require_account(conn, app_id)
            key = self._insert_key(conn, app_id)
        return {"AppId": app_id, **key}

    def list_accounts(self) -> list[dict]:
        """Every account with its applications and SecretIds (never SecretKeys), by AppId."""
        with self._db.write() as conn:  # one consistent snapshot of three tables
            account_rows = conn.execute(sa.select(accounts).order_by(accounts.c.app_id)).all()
            app_rows = conn.execute(sa.select(applications).order_by(applications.c.sub_app_id)).all()
            key_rows = conn.execute(sa.select(api_keys.c.secret_id, api_keys.c.app_id).order_by(
                api_keys.c.created_at, api_keys.c.secret_id)).all()
        listed = {
            row.app_id: {
                "AppId": row.app_id,
                "IsDefault": row.is_default,
                "CreateTime": row.created_at,
                "Applications": [],
                "SecretIds": [],
            }
            for row in account_rows
        }
        for row in app_rows:
            listed[row.app_id]["Applications"].append(
                {"SubAppId": row.sub_app_id, "Name": row.name, "IsDefault": row.is_default}
            )
        for row in key_rows:
            listed[row.app_id]["SecretIds"].append(row.secret_id)
        return list(listed.values())

    # --- inside a write transaction -------------------------------------------------------------

    def _now(self) -> str:
        return iso_utc(self._clock())

    def _default_account(self, conn: sa.Connection) -> int | None:
        return conn.execute(sa.select(accounts.c.app_id).where(accounts.c.is_default)).scalar()

    def _require_account(self, conn: sa.Connection, app_id: int) -> None:
        exists = conn.execute(sa.select(accounts.c.app_id).where(accounts.c.app_id == app_id)).first()
        if exists is None:
            raise _account_not_found(app_id)

    def _insert_account(self, conn: sa.Connection, sub_app_id: int | None) -> tuple[int, int]:
        """A new account (the default one if there is none yet) and its default application,
        whose SubAppId is ``sub_app_id`` when given. Returns (AppId, SubAppId)."""
        is_default = self._default_account(conn) is None
        app_id = self._insert_with_random_id(
            conn, accounts, "app_id", APP_ID_RANGE, is_default=is_default, created_at=self._now()
        )
        if sub_app_id is None:
            sub_app_id = self._insert_application(conn, app_id, "", is_default=True)
        else:
            self._claim_application(conn, app_id, sub_app_id)
        return app_id, sub_app_id

    def _insert_application(self, conn: sa.Connection, app_id: int, name: str, *, is_default: bool) -> int:
        return self._insert_with_random_id(
            conn,
            applications,
            "sub_app_id",
            SUB_APP_ID_RANGE,
            app_id=app_id,
            name=name,
            is_default=is_default,
            template_count=0,
            created_at=self._now(),
        )

    def _insert_with_random_id(self, conn, table, id_column, bounds, **values) -> int:
        """Insert a row under a fresh random id; a collision retries with another id."""
        for _ in range(_ID_ATTEMPTS):
            new_id = _random_in(bounds)
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(table).values({id_column: new_id, **values}))
                return new_id
            except sa.exc.IntegrityError:
                continue
        raise ApiError("InternalError", f"Could not allocate a new {id_column}.")

    def _insert_key(self, conn: sa.Connection, app_id: int) -> dict:
        secret_id = SECRET_ID_PREFIX + _random_token()
        secret_key = _random_token()
        conn.execute(
            sa.insert(api_keys).values(
                secret_id=secret_id, secret_key=secret_key, app_id=app_id, created_at=self._now()
            )
        )
        return {"SecretId": secret_id, "SecretKey": secret_key}

    def _ensure_key(self, conn: sa.Connection, app_id: int, secret_id: str, secret_key: str) -> None:
        """The given key exists, belongs to ``app_id`` and has ``secret_key``."""
        row = conn.execute(
            sa.select(api_keys.c.app_id, api_keys.c.secret_key).where(api_keys.c.secret_id == secret_id)
        ).first()
        if row is None:
            conn.execute(
                sa.insert(api_keys).values(
                    secret_id=secret_id, secret_key=secret_key, app_id=app_id, created_at=self._now()
                )
            )
        elif row.app_id != app_id:
            raise ValueError(f"SecretId {secret_id} belongs to account {row.app_id}, not the default account {app_id}")
        elif row.secret_key != secret_key:
            conn.execute(
                sa.update(api_keys).where(api_keys.c.secret_id == secret_id).values(secret_key=secret_key)
            )
        self._credentials.pop(secret_id, None)

    def _make_default_application(self, conn: sa.Connection, app_id: int, sub_app_id: int) -> int:
        """``sub_app_id`` becomes the default application of ``app_id`` (created if needed)."""
        current = conn.execute(_SELECT_DEFAULT_SUB_APP, {"app_id": app_id}).scalar()
        if current != sub_app_id:
            conn.execute(
                sa.update(applications)
                .where(applications.c.app_id == app_id, applications.c.is_default)
                .values(is_default=False)
            )
            self._claim_application(conn, app_id, sub_app_id)
        return sub_app_id

    def _claim_application(self, conn: sa.Connection, app_id: int, sub_app_id: int) -> None:
        """Application ``sub_app_id`` (existing in this account, or new) becomes the default one."""
        owner = conn.execute(
            sa.select(applications.c.app_id).where(applications.c.sub_app_id == sub_app_id)
        ).scalar()
        if owner is None:
            conn.execute(
                sa.insert(applications).values(
                    sub_app_id=sub_app_id,
                    app_id=app_id,
                    name="",
                    is_default=True,
                    template_count=0,
                    created_at=self._now(),
                )
            )
        elif owner == app_id:
            conn.execute(
                sa.update(applications)
                .where(applications.c.sub_app_id == sub_app_id)
                .values(is_default=True)
            )
        else:
            raise ValueError(f"SubAppId {sub_app_id} belongs to another account ({owner})")
