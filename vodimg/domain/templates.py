"""Image async processing templates: system presets and each application's custom templates.

Rules (DESIGN.md section 3): presets below 10000 are read-only; custom Definitions come from one
counter shared by every application, so they are never reused; at most 50 custom templates per
application, reserved atomically on the application row; Modify merges per capability and
re-checks the whole result; concurrent changes are serialised on the template row (SQLite: the
write transaction holds the database write lock from BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR
UPDATE), so no update is lost.

Inputs are already validated by ``vodimg.validation`` (types, ranges, lengths, unknown keys).
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from vodimg.domain.clock import Clock, iso_utc, utc_now
from vodimg.domain.presets import PRESET_TIME, PRESETS, PRESETS_BY_DEFINITION, is_preset_definition
from vodimg.errors import ApiError
from vodimg.storage.db import Database
from vodimg.storage.schema import TEMPLATE_DEFINITION_COUNTER, applications, counters, templates

MAX_CUSTOM_TEMPLATES_PER_APPLICATION = 50
PRESET_TYPE = "Preset"
CUSTOM_TYPE = "Custom"
# ProcessImageConfigure members whose own members are separate capabilities (merged one by one);
# every other member (EncodeConfig, BeautyConfig, AiCutOutConfig) is one capability.
CAPABILITY_GROUPS = frozenset({"EnhanceConfig"})

# Row shape shared by presets and custom templates:
# (definition, name, comment, configure JSON text, create_time, update_time).
_ROW_COLUMNS = (
    templates.c.definition,
    templates.c.name,
    templates.c.comment,
    templates.c.configure,
    templates.c.create_time,
    templates.c.update_time,
)
_PRESET_ROWS = tuple(
    (p.definition, p.name, p.comment, orjson.dumps(p.configure).decode(), PRESET_TIME, PRESET_TIME)
    for p in PRESETS
)
_PRESET_CONFIGURES = {row[0]: row[3] for row in _PRESET_ROWS}

_SELECT_APP_TEMPLATES = (
    sa.select(*_ROW_COLUMNS)
    .where(templates.c.sub_app_id == sa.bindparam("sub_app_id"))
    .order_by(templates.c.definition)
)
_SELECT_APP_TEMPLATES_IN = _SELECT_APP_TEMPLATES.where(
    templates.c.definition.in_(sa.bindparam("definitions", expanding=True))
)
_SELECT_CONFIGURE = sa.select(templates.c.configure).where(
    templates.c.definition == sa.bindparam("definition"),
    templates.c.sub_app_id == sa.bindparam("sub_app_id"),
)
_SELECT_FOR_MODIFY = (
    sa.select(templates.c.name, templates.c.comment, templates.c.configure)
    .where(
        templates.c.definition == sa.bindparam("definition"),
        templates.c.sub_app_id == sa.bindparam("sub_app_id"),
    )
    .with_for_update()
)
_RESERVE_SLOT = (
    sa.update(applications)
    .where(
        applications.c.sub_app_id == sa.bindparam("app"),
        applications.c.template_count < MAX_CUSTOM_TEMPLATES_PER_APPLICATION,
    )
    .values(template_count=applications.c.template_count + 1)
)
_RELEASE_SLOT = (
    sa.update(applications)
    .where(applications.c.sub_app_id == sa.bindparam("app"))
    .values(template_count=applications.c.template_count - 1)
)
_NEXT_DEFINITION = (
    sa.update(counters)
    .where(counters.c.name == TEMPLATE_DEFINITION_COUNTER)
    .values(value=counters.c.value + 1)
    .returning(counters.c.value)
)


def _template_not_found(definition: int) -> ApiError:
    return ApiError(
        "ResourceNotFound.TemplateNotExist", f"Template Definition {definition} does not exist."
    )


def _preset_is_read_only(definition: int) -> ApiError:
    return ApiError(
        "UnauthorizedOperation",
        f"Definition {definition} is below 10000: system preset templates cannot be modified "
        "or deleted.",
    )


def _item(row) -> dict:
    """A ProcessImageAsyncTemplateItem, members in the spec's order."""
    definition, name, comment, configure, create_time, update_time = row
    return {
        "Definition": definition,
        "Type": PRESET_TYPE if is_preset_definition(definition) else CUSTOM_TYPE,
        "Name": name,
        "Comment": comment,
        "CreateTime": create_time,
        "UpdateTime": update_time,
        "ProcessImageConfigure": orjson.loads(configure),
    }


def merge_configure(current: dict, changes: dict) -> dict:
    """Modify's merge: each capability given in ``changes`` replaces that capability whole;
    capabilities left out stay as they are. Returns a new dict; ``current`` is not changed."""
    merged = dict(current)
    for key, value in changes.items():
        if key in CAPABILITY_GROUPS:
            merged[key] = {**(current.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


def _check_configure(configure: dict) -> None:
    # Imported here: the validator sits above the domain and imports the spec at load time.
    from vodimg.validation import check_configure

    check_configure(configure, path="ProcessImageConfigure")


class TemplateService:
    def __init__(self, db: Database, *, clock: Clock = utc_now):
        self._db = db
        self._clock = clock

    def create(self, sub_app_id: int, name: str, comment: str, configure: dict) -> int:
        """A new custom template; returns its Definition. LimitExceeded at the quota."""
        now = iso_utc(self._clock())
        with self._db.write() as conn:
            if conn.execute(_RESERVE_SLOT, {"app": sub_app_id}).rowcount != 1:
                raise self._no_free_slot(conn, sub_app_id)
            definition = conn.execute(_NEXT_DEFINITION).scalar_one()
            conn.execute(
                sa.insert(templates).values(
                    definition=definition,
                    sub_app_id=sub_app_id,
                    name=name,
                    comment=comment,
                    configure=orjson.dumps(configure).decode(),
                    create_time=now,
                    update_time=now,
                    version=1,
                )
            )
        return definition

    def modify(
        self,
        sub_app_id: int,
        definition: int,
        name: str | None,
        comment: str | None,
        configure: dict | None,
    ) -> None:
        """Change what is given (None: keep); ``configure`` is merged per capability."""
        if is_preset_definition(definition):
            raise _preset_is_read_only(definition)
        now = iso_utc(self._clock())
        with self._db.write() as conn:
            row = conn.execute(
                _SELECT_FOR_MODIFY, {"definition": definition, "sub_app_id": sub_app_id}
            ).first()
            if row is None:
                raise _template_not_found(definition)
            changes = {"update_time": now, "version": templates.c.version + 1}
            if name is not None:
                changes["name"] = name
            if comment is not None:
                changes["comment"] = comment
            if configure is not None:
                merged = merge_configure(orjson.loads(row.configure), configure)
                _check_configure(merged)
                changes["configure"] = orjson.dumps(merged).decode()
            conn.execute(
                sa.update(templates).where(templates.c.definition == definition).values(changes)
            )

    def delete(self, sub_app_id: int, definition: int) -> None:
        """Delete a custom template; its Definition is never issued again."""
        if is_preset_definition(definition):
            raise _preset_is_read_only(definition)
        with self._db.write() as conn:
            deleted = conn.execute(
                sa.delete(templates).where(
                    templates.c.definition == definition, templates.c.sub_app_id == sub_app_id
                )
            ).rowcount
            if deleted != 1:
                raise _template_not_found(definition)
            conn.execute(_RELEASE_SLOT, {"app": sub_app_id})

    def describe(
        self, sub_app_id: int, definitions: list[int] | None, offset: int, limit: int
    ) -> tuple[int, list[dict]]:
        """(TotalCount, one page of items): presets then the application's custom templates,
        ascending Definition; ``definitions`` filters (None or empty: no filter)."""
        if definitions:
            wanted = set(definitions)
            presets = [row for row in _PRESET_ROWS if row[0] in wanted]
            custom = [d for d in wanted if not is_preset_definition(d)]
            rows = self._custom_rows(sub_app_id, custom) if custom else []
        else:
            presets = _PRESET_ROWS
            rows = self._custom_rows(sub_app_id, None)
        # At most 50 custom rows per application: fetching them all gives the total in one query.
        matches = [*presets, *rows]
        return len(matches), [_item(row) for row in matches[offset : offset + limit]]

    def configure_for_task(self, sub_app_id: int, definition: int) -> dict:
        """A private copy of the template's ProcessImageConfigure (a task's snapshot)."""
        if is_preset_definition(definition):
            configure = _PRESET_CONFIGURES.get(definition)
        else:
            with self._db.read() as conn:
                configure = conn.execute(
                    _SELECT_CONFIGURE, {"definition": definition, "sub_app_id": sub_app_id}
                ).scalar()
        if configure is None:
            raise _template_not_found(definition)
        return orjson.loads(configure)

    def _custom_rows(self, sub_app_id: int, definitions: list[int] | None) -> list:
        with self._db.read() as conn:
            if definitions is None:
                return conn.execute(_SELECT_APP_TEMPLATES, {"sub_app_id": sub_app_id}).all()
            return conn.execute(
                _SELECT_APP_TEMPLATES_IN, {"sub_app_id": sub_app_id, "definitions": definitions}
            ).all()

    def _no_free_slot(self, conn: sa.Connection, sub_app_id: int) -> ApiError:
        exists = conn.execute(
            sa.select(applications.c.sub_app_id).where(applications.c.sub_app_id == sub_app_id)
        ).first()
        if exists is None:  # callers resolve the SubAppId first; never reveal anything here
            return ApiError("UnauthorizedOperation", f"SubAppId {sub_app_id} is not an application of this account.")
        return ApiError(
            "LimitExceeded",
            f"An application holds at most {MAX_CUSTOM_TEMPLATES_PER_APPLICATION} custom image "
            "async processing templates: delete one first.",
        )
