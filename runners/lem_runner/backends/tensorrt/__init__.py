"""The tensorrt backend: its config section (config.py), spec (spec.py) and implementation (backend.py, which
imports the engine's library; nothing here does)."""
