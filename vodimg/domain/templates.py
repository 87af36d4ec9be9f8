"""Image async processing templates: system presets and each application's custom templates.

Rules (DESIGN.md section 3): presets below 10000 are read-only; custom Definitions come from one
counter shared by every application, so they are never reused; at most 50 custom templates per
application, reserved atomically on the application row; Modify merges per capability and
re-checks the whole result; concurrent changes are serialised on the template row (SQLite: the
write transaction holds the database write lock from BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR
UPDATE), so no update is lost.

Describe reads an application's templates from a per-process cache while the application's
``templates_version`` (bumped in the same transaction as every create, modify and delete, by any
process) is the one the cache was filled at: one indexed single-row read instead of up to 50 rows.

Inputs are already validated by ``vodimg.validation`` (types, ranges, lengths, unknown keys).
"""

from __future__ import annotations

import threading

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
# Applications whose templates one process keeps (the earliest cached are dropped first).
CACHED_APPLICATIONS = 1024

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

# The statements, compiled once per database (see TemplateService.__init__). Templates of one
# application are always read whole (at most 50 rows): that gives TotalCount and every filter.
_SELECT_APP_TEMPLATES = (
    sa.select(*_ROW_COLUMNS)
    .where(templates.c.sub_app_id == sa.bindparam("sub_app_id"))
    .order_by(templates.c.definition)
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
_UPDATE_TEMPLATE = (
    sa.update(templates)
    .where(templates.c.definition == sa.bindparam("definition"))
    .values(
        name=sa.bindparam("name"),
        comment=sa.bindparam("comment"),
        configure=sa.bindparam("configure"),
        update_time=sa.bindparam("update_time"),
        version=templates.c.version + 1,
    )
)
_INSERT_TEMPLATE = sa.insert(templates)
_DELETE_TEMPLATE = sa.delete(templates).where(
    templates.c.definition == sa.bindparam("definition"),
    templates.c.sub_app_id == sa.bindparam("sub_app_id"),
)
_RESERVE_SLOT = (
    sa.update(applications)
    .where(
        applications.c.sub_app_id == sa.bindparam("app"),
        applications.c.template_count < MAX_CUSTOM_TEMPLATES_PER_APPLICATION,
    )
    .values(
        template_count=applications.c.template_count + 1,
        templates_version=applications.c.templates_version + 1,
    )
)
_RELEASE_SLOT = (
    sa.update(applications)
    .where(applications.c.sub_app_id == sa.bindparam("app"))
    .values(
        template_count=applications.c.template_count - 1,
        templates_version=applications.c.templates_version + 1,
    )
)
_NEXT_DEFINITION = (
    sa.update(counters)
    .where(counters.c.name == TEMPLATE_DEFINITION_COUNTER)
    .values(value=counters.c.value + 1)
    .returning(counters.c.value)
)
_SELECT_APPLICATION = sa.select(applications.c.sub_app_id).where(
    applications.c.sub_app_id == sa.bindparam("app")
)
_SELECT_TEMPLATES_VERSION = sa.select(applications.c.templates_version).where(
    applications.c.sub_app_id == sa.bindparam("app")
)
_BUMP_TEMPLATES_VERSION = (
    sa.update(applications)
    .where(applications.c.sub_app_id == sa.bindparam("app"))
    .values(templates_version=applications.c.templates_version + 1)
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


def _listed(row) -> tuple[int, dict, str]:
    """(Definition, the item's members but ProcessImageConfigure, its JSON text): a row as kept
    for describe, which builds each item from it with a fresh ProcessImageConfigure."""
    definition, name, comment, configure, create_time, update_time = row
    head = {
        "Definition": definition,
        "Type": PRESET_TYPE if is_preset_definition(definition) else CUSTOM_TYPE,
        "Name": name,
        "Comment": comment,
        "CreateTime": create_time,
        "UpdateTime": update_time,
    }
    return definition, head, configure


def _item(listed: tuple[int, dict, str]) -> dict:
    """A ProcessImageAsyncTemplateItem, members in the spec's order; the caller's own copy."""
    _, head, configure = listed
    return {**head, "ProcessImageConfigure": orjson.loads(configure)}


_PRESETS_LISTED = tuple(_listed(row) for row in _PRESET_ROWS)


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
        compile_ = db.compile
        self._select_app_templates = compile_(_SELECT_APP_TEMPLATES)
        self._select_configure = compile_(_SELECT_CONFIGURE)
        self._select_for_modify = compile_(_SELECT_FOR_MODIFY)
        self._update_template = compile_(_UPDATE_TEMPLATE)
        self._insert_template = compile_(_INSERT_TEMPLATE)
        self._delete_template = compile_(_DELETE_TEMPLATE)
        self._reserve_slot = compile_(_RESERVE_SLOT)
        self._release_slot = compile_(_RELEASE_SLOT)
        self._next_definition = compile_(_NEXT_DEFINITION)
        self._select_application = compile_(_SELECT_APPLICATION)
        self._select_templates_version = compile_(_SELECT_TEMPLATES_VERSION)
        self._bump_templates_version = compile_(_BUMP_TEMPLATES_VERSION)
        # sub_app_id -> (templates_version, its custom templates as _listed tuples)
        self._listed: dict[int, tuple[int, tuple]] = {}
        self._listed_lock = threading.Lock()

    @property
    def reads_never_wait(self) -> bool:
        """True when ``describe`` and ``configure_for_task`` never wait for a lock or the network."""
        return self._db.reads_never_wait

    @property
    def one_writer_at_a_time(self) -> bool:
        """True when ``create``, ``modify`` and ``delete`` run one at a time (whatever the caller's
        concurrency): callers gain nothing from running them on several threads."""
        return self._db.one_writer_at_a_time

    def create(self, sub_app_id: int, name: str, comment: str, configure: dict) -> int:
        """A new custom template; returns its Definition. LimitExceeded at the quota."""
        now = iso_utc(self._clock())
        with self._db.transaction() as cursor:
            if self._reserve_slot.run(cursor, {"app": sub_app_id}).rowcount != 1:
                raise self._no_free_slot(cursor, sub_app_id)
            definition = self._next_definition.run(cursor).fetchone()[0]
            self._insert_template.run(cursor, {
                "definition": definition,
                "sub_app_id": sub_app_id,
                "name": name,
                "comment": comment,
                "configure": orjson.dumps(configure).decode(),
                "create_time": now,
                "update_time": now,
                "version": 1,
            })
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
        with self._db.transaction() as cursor:
            row = self._select_for_modify.run(
                cursor, {"definition": definition, "sub_app_id": sub_app_id}
            ).fetchone()
            if row is None:
                raise _template_not_found(definition)
            current_name, current_comment, current_configure = row
            if configure is not None:
                merged = merge_configure(orjson.loads(current_configure), configure)
                _check_configure(merged)
                current_configure = orjson.dumps(merged).decode()
            self._update_template.run(cursor, {
                "definition": definition,
                "name": current_name if name is None else name,
                "comment": current_comment if comment is None else comment,
                "configure": current_configure,
                "update_time": now,
            })
            self._bump_templates_version.run(cursor, {"app": sub_app_id})

    def delete(self, sub_app_id: int, definition: int) -> None:
        """Delete a custom template; its Definition is never issued again."""
        if is_preset_definition(definition):
            raise _preset_is_read_only(definition)
        with self._db.transaction() as cursor:
            deleted = self._delete_template.run(
                cursor, {"definition": definition, "sub_app_id": sub_app_id}
            ).rowcount
            if deleted != 1:
                raise _template_not_found(definition)
            self._release_slot.run(cursor, {"app": sub_app_id})

    def describe(
        self, sub_app_id: int, definitions: list[int] | None, offset: int, limit: int
    ) -> tuple[int, list[dict]]:
        """(TotalCount, one page of items): presets then the application's custom templates,
        ascending Definition; ``definitions`` filters (None or empty: no filter)."""
        listed = self._custom_listed(sub_app_id)
        if definitions:
            wanted = set(definitions)
            matches = [entry for entry in (*_PRESETS_LISTED, *listed) if entry[0] in wanted]
        else:
            matches = [*_PRESETS_LISTED, *listed]
        return len(matches), [_item(entry) for entry in matches[offset : offset + limit]]

    def configure_for_task(self, sub_app_id: int, definition: int) -> dict:
        """A private copy of the template's ProcessImageConfigure (a task's snapshot)."""
        if is_preset_definition(definition):
            configure = _PRESET_CONFIGURES.get(definition)
        else:
            with self._db.cursor() as cursor:
                row = self._select_configure.run(
                    cursor, {"definition": definition, "sub_app_id": sub_app_id}
                ).fetchone()
            configure = row[0] if row is not None else None
        if configure is None:
            raise _template_not_found(definition)
        return orjson.loads(configure)

    def _custom_listed(self, sub_app_id: int) -> tuple:
        """The application's custom templates (``_listed``), ascending Definition: cached while
        its templates_version stays. The rows are read after the version, so they are at least
        as new as the version they are cached under: a later change always refreshes them."""
        with self._db.cursor() as cursor:
            row = self._select_templates_version.run(cursor, {"app": sub_app_id}).fetchone()
            if row is None:  # no such application (callers resolve SubAppId first): no templates
                return ()
            cached = self._listed.get(sub_app_id)
            if cached is not None and cached[0] == row[0]:
                return cached[1]
            rows = self._select_app_templates.run(cursor, {"sub_app_id": sub_app_id}).fetchall()
        listed = tuple(_listed(row) for row in rows)
        with self._listed_lock:
            if len(self._listed) >= CACHED_APPLICATIONS and sub_app_id not in self._listed:
                del self._listed[next(iter(self._listed))]
            self._listed[sub_app_id] = (row[0], listed)
        return listed

    def _no_free_slot(self, cursor, sub_app_id: int) -> ApiError:
        if self._select_application.run(cursor, {"app": sub_app_id}).fetchone() is None:
            # callers resolve the SubAppId first; never reveal anything here
            return ApiError("UnauthorizedOperation", f"SubAppId {sub_app_id} is not an application of this account.")
        return ApiError(
            "LimitExceeded",
            f"An application holds at most {MAX_CUSTOM_TEMPLATES_PER_APPLICATION} custom image "
            "async processing templates: delete one first.",
        )
