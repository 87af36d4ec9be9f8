"""Assembly: the services, the object store, the queue and the worker, built from ``Settings``.

``vodimg serve`` builds the API on them and (unless ``--engine-processes 0``) a worker in the same
process; ``vodimg worker`` builds only the worker. Both share the database and the object store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vodimg.config import Settings
from vodimg.domain.accounts import AccountService
from vodimg.domain.media import MediaService
from vodimg.domain.tasks import PROCESS_IMAGE, PULL_UPLOAD, TaskService, TaskSettings
from vodimg.domain.templates import TemplateService
from vodimg.errors import ApiError
from vodimg.events.service import EventService, EventSettings
from vodimg.objectstore import ObjectStore, open_store
from vodimg.queue import TaskQueue
from vodimg.storage.db import Database

logger = logging.getLogger("vodimg")


@dataclass
class Services:
    settings: Settings
    database: Database
    store: ObjectStore
    queue: TaskQueue
    accounts: AccountService
    templates: TemplateService
    media: MediaService
    tasks: TaskService
    url_policy: object  # vodimg.netguard.UrlPolicy
    events: object  # vodimg.events.service.EventService
    library: object = None  # vodimg.domain.uploads.MediaLibrary (ApplyUpload ... DeleteMedia)
    cos_uploads: object = None  # vodimg.domain.uploads.CosUploads (the COS endpoint)
    max_input_bytes: int = 0  # VODIMG_MAX_INPUT_BYTES


def build_services(settings: Settings, database: Database) -> Services:
    from vodimg.netguard import UrlPolicy, UrlRefused, check_url

    url_policy = UrlPolicy.from_env()

    def url_check(url: str) -> None:
        try:
            check_url(url, url_policy)
        except UrlRefused as refused:
            raise ApiError("InvalidParameterValue.Url", f"Url refused: {refused}") from None

    store = open_store(settings.storage_location, settings.s3_options)
    store.check()  # the start-up check: a missing bucket or a wrong key is an error now, not a 500 later
    queue = TaskQueue(database, lease_seconds=settings.task_lease_seconds)
    templates = TemplateService(database)
    media = MediaService(database)
    task_settings = TaskSettings(settings.public_base, int(settings.session_id_days * 86_400_000))
    tasks = TaskService(database, store, queue, media, templates, url_check, task_settings)
    events = EventService(database, url_policy, EventSettings(
        lease_ms=int(settings.event_lease_seconds * 1000), wait_seconds=settings.event_wait_seconds,
        poll_seconds=settings.event_poll_seconds))
    from vodimg.domain.uploads import CosUploads, MediaLibrary, UploadSettings
    from vodimg.engine.limits import Limits

    max_input_bytes = Limits.from_env().max_input_bytes
    library = MediaLibrary(database, store, media, UploadSettings(
        settings.public_base, settings.region, max_input_bytes, settings.upload_session_seconds))
    cos_uploads = CosUploads(database, store, max_input_bytes)
    return Services(settings, database, store, queue, AccountService(database), templates, media, tasks,
                    url_policy, events, library, cos_uploads, max_input_bytes)


def build_worker(services: Services, processes: int):
    """The worker with ``processes`` engine child processes (and as many task slots)."""
    from vodimg.engine import Limits
    from vodimg.events.push import PushDelivery, PushSettings
    from vodimg.worker.engine_pool import EnginePool
    from vodimg.worker.image_task import ImageTaskRunner
    from vodimg.worker.maintenance import Maintenance
    from vodimg.worker.runtime import Worker

    settings = services.settings
    limits = Limits.from_env()
    pool = EnginePool(processes, limits)
    runner = ImageTaskRunner(services.store, services.queue, services.media, pool, services.url_policy,
                             limits, settings.public_base)
    from vodimg.worker.pull_upload import PullUploadRunner

    pull_runner = PullUploadRunner(services.store, services.queue, services.url_policy, limits.max_input_bytes,
                                   settings.public_base, settings.region)
    runners = {PROCESS_IMAGE: runner, PULL_UPLOAD: pull_runner}
    maintenance = Maintenance(services.database, services.store, services.queue, runners,
                              session_window_ms=int(settings.session_id_days * 86_400_000))
    push = PushDelivery(services.database, services.url_policy, PushSettings(
        timeout_seconds=settings.push_timeout_seconds, first_retry_seconds=settings.push_retry_seconds,
        concurrency=settings.push_concurrency, poll_seconds=settings.event_poll_seconds))
    worker = Worker(services.queue, runners, slots=processes, poll_seconds=settings.queue_poll_seconds,
                    maintenance=maintenance, alongside=(push,))
    return worker, pool
