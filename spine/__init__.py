"""The spine: NATS with JetStream as the observer's public interface (see docs/spine.md).

`server` runs the embedded nats-server as a supervised child, `subjects` names the subjects, `wire` holds
the public message models (their JSON Schemas come from `schemas`), `convert` turns what the actors handle
into those messages, `publisher` sends them from any thread without blocking it, `stream` sets up the
JetStream stream that keeps the day, `health` publishes the pulse. Each piece works in any process.
"""
