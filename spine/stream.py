"""The JetStream stream that keeps an instance's day: every subject under `observer.<instance>.`.

File storage, messages older than `stream_max_age_hours` dropped (and the oldest first past the optional
size cap), so a consumer that starts late replays the day with `DeliverPolicy.BY_START_TIME` or `ALL`.
Created when missing and brought to the configured limits when it exists; any process may call it.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from config.settings import SpineSettings
from spine.subjects import Subjects


def stream_config(settings: SpineSettings) -> StreamConfig:
    subjects = Subjects(settings.instance)
    max_bytes = settings.stream_max_megabytes * 1024 * 1024 if settings.stream_max_megabytes else -1
    return StreamConfig(
        name=subjects.stream_name,
        description=f"the observer's facts of instance {settings.instance!r}, kept for replay",
        subjects=[subjects.everything],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.stream_max_age_hours * 3600.0,
        max_bytes=max_bytes,
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
