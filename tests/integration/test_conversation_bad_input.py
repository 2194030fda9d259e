"""Bad multi-turn input through the CLI: one line naming the field, exit 2, from `lem config validate` and from
`lem run` alike — a conversation whose longest history exceeds the model's context (the tiny model's
max_position_embeddings is 1024), a think time without its parameters."""

from __future__ import annotations

import pytest
from conftest import run_lem

LONG = "turns: 8, user_tokens: {value: 100}, answer_tokens: {value: 64}"
#: one token a word (the old count) puts this at 608 tokens, inside 1024; the tiny model's tokenizer counts 1754
TOKENIZED = "turns: 4, user_tokens: {value: 60}, answer_tokens: {value: 64}"
NO_MEAN = "turns: 2, think_time: {dist: exponential}"


@pytest.mark.parametrize("section, words", [(LONG, "over the model's max_position_embeddings (1024)"),
                                            (TOKENIZED, "can reach 1754 tokens (counted by the model's tokenizer)"),
                                            (NO_MEAN, "think_time dist 'exponential' needs mean")])
@pytest.mark.parametrize("command", [["config", "validate"], ["run"]])
def test_a_bad_conversation_is_refused_in_one_line(tmp_path, tiny_model_path, section, words, command):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\nmodel: {tiny_model_path}\nscenario: serving\ndevice: cpu\nmax_output_tokens: 8\n"
                   f"serving: {{arrival: poisson, rate: 1, conversations: {{{section}}}}}\n")
    out = run_lem(*command, str(cfg), cwd=tmp_path)
    lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "serving.conversations" in " ".join(lines) and words in " ".join(lines)
