"""Where the spine is and what it is called: `--nats`, `OBSERVER_NATS_URL`, `spine.*` settings."""

from __future__ import annotations

import pytest

from app.cli import build_parser
from config.loader import ConfigError, load_settings
from spine.stream import stream_config


def test_an_existing_server_comes_from_the_environment_or_the_flag() -> None:
    assert load_settings(env={}).nats_url is None
    assert load_settings(env={"OBSERVER_NATS_URL": "nats://10.0.0.5:4222"}).nats_url == "nats://10.0.0.5:4222"
    assert build_parser().parse_args(["--nats", "nats://a:1,nats://b:1"]).nats == "nats://a:1,nats://b:1"
    flag_wins = load_settings(env={"OBSERVER_NATS_URL": "nats://env:1"}, overrides={"nats_url": "nats://flag:1"})
    assert flag_wins.nats_url == "nats://flag:1"


def test_an_instance_that_cannot_be_a_subject_token_is_one_clear_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"OBSERVER_SPINE__INSTANCE": "desk.one"})
    message = str(caught.value)
    assert "spine.instance" in message and "OBSERVER_SPINE__INSTANCE" in message and "desk.one" not in message
    assert "\n" not in message


def test_the_stream_keeps_the_instances_subjects_for_the_configured_age() -> None:
    settings = load_settings(env={"OBSERVER_SPINE__INSTANCE": "desk1",
                                  "OBSERVER_SPINE__STREAM_MAX_AGE_HOURS": "30",
                                  "OBSERVER_SPINE__STREAM_MAX_MEGABYTES": "2048"}).spine
    config = stream_config(settings)
    assert config.name == "OBSERVER_DESK1"
    kept = set(config.subjects)
    assert {"observer.desk1.tick.*", "observer.desk1.gap.marked.*", "observer.desk1.alert"} <= kept
    assert not any(".control" in subject or subject.endswith(">") for subject in kept)
    assert config.max_age == 30 * 3600 and config.max_bytes == 2048 * 1024 * 1024
    assert stream_config(load_settings(env={}).spine).max_bytes == -1
