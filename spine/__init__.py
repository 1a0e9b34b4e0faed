"""The spine: NATS with JetStream, the observer's public interface (subjects, wire models, publisher)."""
