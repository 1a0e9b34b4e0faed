"""The JetStream stream that keeps an instance's day: every fact's subject under `observer.<instance>.`.

Only the facts' subjects (`spine.wire.FACT_TYPES`): a control request (`observer.<instance>.control.*`)
is no fact, and a stream holding its subject would answer the request itself (with a publish
acknowledgement) before the control process could.

File storage, messages older than `stream_max_age_hours` dropped (and the oldest first past the optional
size cap), so a consumer that starts late replays the day with `DeliverPolicy.BY_START_TIME` or `ALL`.
Created when missing and brought to the configured limits when it exists; any process may call it.
`spine.replicas` copies of it are kept (3 on a three-server cluster, so a dead server loses nothing), and the
key-value buckets made with `ensure_bucket` get as many.
"""

from __future__ import annotations

import re

from loguru import logger
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from config.settings import SpineSettings
from spine.subjects import Subjects
from spine.wire import FACT_TYPES

DUPLICATE_WINDOW_SECONDS = 120.0
"""How long the stream remembers a message id: a publication sent again within it is stored once."""


def fact_subjects(subjects: Subjects) -> list[str]:
    """Each fact type's subject, its keys as wildcards (`observer.main.tick.*`, `observer.main.alert`)."""
    patterns = (re.sub(r"\{\w+\}", "*", model.subject_pattern) for model in FACT_TYPES)
    return [f"{subjects.prefix}.{pattern}" for pattern in dict.fromkeys(patterns)]


def stream_config(settings: SpineSettings) -> StreamConfig:
    subjects = Subjects(settings.instance)
    max_bytes = settings.stream_max_megabytes * 1024 * 1024 if settings.stream_max_megabytes else -1
    return StreamConfig(
        name=subjects.stream_name,
        description=f"the observer's facts of instance {settings.instance!r}, kept for replay",
        subjects=fact_subjects(subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.stream_max_age_hours * 3600.0,
        max_bytes=max_bytes,
        num_replicas=settings.replicas,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


async def ensure_stream(js: JetStreamContext, settings: SpineSettings) -> None:
    """The stream exists with the configured subjects and limits afterwards."""
    config = stream_config(settings)
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


def bucket_config(settings: SpineSettings, bucket: str, *, ttl: float | None = None, history: int = 1,
                  description: str | None = None) -> KeyValueConfig:
    """A key-value bucket of the instance, file-stored, with `spine.replicas` copies."""
    return KeyValueConfig(bucket=bucket, description=description, history=history, ttl=ttl,
                          storage=StorageType.FILE, replicas=settings.replicas)


async def ensure_bucket(
    js: JetStreamContext, settings: SpineSettings, bucket: str, *, ttl: float | None = None, history: int = 1,
    description: str | None = None,
) -> KeyValue:
    """The bucket, created when missing; an existing one gets the configured number of replicas and `ttl`
    (its stream `KV_<bucket>` updated in place, its keys kept)."""
    config = bucket_config(settings, bucket, ttl=ttl, history=history, description=description)
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(config)
    info = await js.stream_info(f"KV_{bucket}")
    changed = info.config.num_replicas != settings.replicas
    info.config.num_replicas = settings.replicas
    if ttl is not None and info.config.max_age != ttl:
        logger.info("{}: time to live set to {:g} s", bucket, ttl)
        info.config.max_age, changed = ttl, True
    if changed:
        await js.update_stream(info.config)
    return kv
