"""The VOD actions: one provider for the service, its behaviour driven by the spec.

``VodProvider.call`` validates an action's parameters against the spec's ``<Action>Request``
(vodimg/validation), resolves the application (SubAppId, or the account's default), and runs the
action's method, which calls the domain services and returns the fields of ``<Action>Response``
without RequestId (the wire layer adds it). Adding an action is one method decorated with
``@action("<Action>")``, with ``database="read"`` or ``"write"`` when the action's only waits are
database reads, or reads and writes.
"""

from __future__ import annotations

from typing import Callable

from vodimg.domain.accounts import AccountService
from vodimg.domain.templates import TemplateService
from vodimg.errors import ApiError, invalid_action
from vodimg.validation import validate_request

# Defaults the spec documents for DescribeProcessImageAsyncTemplates (默认值：0 / 默认值：10).
DEFAULT_OFFSET = 0
DEFAULT_LIMIT = 10

_ACTIONS: dict[str, Callable] = {}
_DATABASE_ACCESS: dict[str, set[str]] = {"read": set(), "write": set()}


def action(name: str, *, database: str | None = None):
    """Register the decorated method as the implementation of action ``name``; the method takes
    ``(self, sub_app_id, params)`` with validated params and returns the response fields.
    ``database``: "read" when the action only reads the database, "write" when it reads and
    writes it, and waits for nothing else (no network, no files); None otherwise."""

    def register(method):
        _ACTIONS[name] = method
        if database is not None:
            _DATABASE_ACCESS[database].add(name)
        return method

    return register


class VodProvider:
    actions: frozenset[str] = frozenset()  # set below, from the registry

    def __init__(self, accounts: AccountService, templates: TemplateService, tasks=None, events=None,
                 library=None):
        self._accounts = accounts
        self._templates = templates
        self._tasks = tasks  # vodimg.domain.tasks.TaskService
        self._events = events  # vodimg.events.service.EventService
        self._library = library  # vodimg.domain.uploads.MediaLibrary
        # Where the wire runs each call (empty on PostgreSQL: every call on its thread pool):
        # - inline_actions never wait (database reads that never wait): on the event loop;
        # - serial_actions only wait for a database with one writer at a time: on one thread, in
        #   turn, which costs less than threads taking that lock in turn.
        never_wait = accounts.lookups_never_wait and templates.reads_never_wait
        self.inline_actions: frozenset[str] = frozenset(_DATABASE_ACCESS["read"] if never_wait else ())
        one_writer = templates.one_writer_at_a_time
        self.serial_actions: frozenset[str] = frozenset(_DATABASE_ACCESS["write"] if one_writer else ())

    def call(self, action: str, app_id: int, params: dict, *, from_strings: bool = False) -> dict:
        """Run ``action`` for account ``app_id``; returns the response fields without RequestId.
        Raises ApiError (InvalidAction for an action not implemented here)."""
        method = _ACTIONS.get(action)
        if method is None:
            raise invalid_action(action)
        valid = validate_request(action, params, from_strings=from_strings)
        sub_app_id = self._accounts.resolve_sub_app(app_id, valid.get("SubAppId"))
        return method(self, sub_app_id, valid)

    # --- image async processing templates ------------------------------------------------------

    @action("CreateProcessImageAsyncTemplate", database="write")
    def _create_template(self, sub_app_id: int, params: dict) -> dict:
        definition = self._templates.create(
            sub_app_id, params.get("Name", ""), params.get("Comment", ""), params["ProcessImageConfigure"])
        return {"Definition": definition}

    @action("ModifyProcessImageAsyncTemplate", database="write")
    def _modify_template(self, sub_app_id: int, params: dict) -> dict:
        self._templates.modify(
            sub_app_id, params["Definition"], params.get("Name"), params.get("Comment"),
            params.get("ProcessImageConfigure"))
        return {}

    @action("DeleteProcessImageAsyncTemplate", database="write")
    def _delete_template(self, sub_app_id: int, params: dict) -> dict:
        self._templates.delete(sub_app_id, params["Definition"])
        return {}

    @action("DescribeProcessImageAsyncTemplates", database="read")
    def _describe_templates(self, sub_app_id: int, params: dict) -> dict:
        total, items = self._templates.describe(
            sub_app_id, params.get("Definitions") or None,
            params.get("Offset", DEFAULT_OFFSET), params.get("Limit", DEFAULT_LIMIT))
        return {"TotalCount": total, "ProcessImageAsyncTemplateSet": items}

    # --- image tasks ---------------------------------------------------------------------------

    # Not a database-only action: a Url's host name is resolved, Base64 bytes are stored.
    @action("ProcessImageAsync")
    def _process_image(self, sub_app_id: int, params: dict) -> dict:
        return {"TaskId": self._tasks.submit_image_task(sub_app_id, params)}

    @action("DescribeTaskDetail", database="read")
    def _describe_task_detail(self, sub_app_id: int, params: dict) -> dict:
        return self._tasks.detail(sub_app_id, params["TaskId"])

    @action("DescribeTasks", database="read")
    def _describe_tasks(self, sub_app_id: int, params: dict) -> dict:
        return self._tasks.list(sub_app_id, params)

    # --- the media library -----------------------------------------------------------------------

    @action("ApplyUpload", database="write")
    def _apply_upload(self, sub_app_id: int, params: dict) -> dict:
        return self._library.apply(sub_app_id, params)

    # Not database-only: reads the uploaded object's header from the object store.
    @action("CommitUpload")
    def _commit_upload(self, sub_app_id: int, params: dict) -> dict:
        return self._library.commit(sub_app_id, params["VodSessionKey"])

    # Not database-only: the MediaUrl's host name is resolved (the URL guard).
    @action("PullUpload")
    def _pull_upload(self, sub_app_id: int, params: dict) -> dict:
        return {"TaskId": self._tasks.submit_pull_upload(sub_app_id, params)}

    @action("DescribeMediaInfos", database="read")
    def _describe_media_infos(self, sub_app_id: int, params: dict) -> dict:
        return self._library.describe(sub_app_id, params["FileIds"], params.get("Filters"))

    # Not database-only: the stored bytes are deleted too.
    @action("DeleteMedia")
    def _delete_media(self, sub_app_id: int, params: dict) -> dict:
        self._library.delete(sub_app_id, params["FileId"], params.get("DeleteParts"))
        return {}

    # --- events ----------------------------------------------------------------------------------

    @action("DescribeEventConfig", database="read")
    def _describe_event_config(self, sub_app_id: int, params: dict) -> dict:
        return self._events.describe_config(sub_app_id)

    # Not a database-only action: the NotificationUrl's host name is resolved (the URL guard).
    @action("ModifyEventConfig")
    def _modify_event_config(self, sub_app_id: int, params: dict) -> dict:
        self._events.modify_config(sub_app_id, params)
        return {}

    # Answers the events, or WaitThenRetry (vodimg/waiting.py) while none is ready: the long poll
    # waits on the wire's event loop, not on a thread.
    @action("PullEvents", database="write")
    def _pull_events(self, sub_app_id: int, params: dict):
        return self._events.pull(sub_app_id)

    @action("ConfirmEvents", database="write")
    def _confirm_events(self, sub_app_id: int, params: dict) -> dict:
        self._events.confirm(sub_app_id, params["EventHandles"])
        return {}


VodProvider.actions = frozenset(_ACTIONS)
