"""The spine's real nats-server fixture, shared with the control-over-the-spine tests."""

from tests.spine.conftest import nats_server  # noqa: F401
