"""The serving scenario: an OpenAI-compatible server started (or named) by the runner, driven over loopback by lem's
load generator, measured like an offline run and attributed per request."""
