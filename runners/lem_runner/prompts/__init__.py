"""Prompt sets: the built-in one shipped here, a JSONL file, or synthetic prompts of a set token length."""

from lem_runner.prompts.loader import PromptError, load_prompts

__all__ = ["PromptError", "load_prompts"]
