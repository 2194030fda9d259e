"""The llamacpp backend: its config section (config.py), spec (spec.py), implementation (backend.py, which imports
llama-cpp-python; nothing here does) and server command (server.py)."""
