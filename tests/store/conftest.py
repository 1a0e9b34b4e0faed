"""The spine's real nats-server fixture, shared with the store role's tests."""

from tests.spine.conftest import nats_server  # noqa: F401
