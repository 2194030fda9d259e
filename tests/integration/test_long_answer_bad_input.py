"""Long answers and shared prefixes that cannot fit the model's context (the tiny model's max_position_embeddings is
1024): `lem config validate` and `lem run` refuse them alike, in one line naming serving, exit 2 — before a server
starts, not as HTTP 400s in the middle of the window."""

from __future__ import annotations

import pytest
from conftest import run_lem

LONG_ANSWER = "output_tokens: {dist: lognormal, mean: 4000, sigma: 1, max: 30000}"
LONG_PREFIX = "shared_prefix: {tokens: 1010, groups: 2}, input_tokens: {value: 16}"


ANSWER_WORDS = "can reach 30512 tokens (prompt 512 + answer 30000), over the model's max_position_embeddings"
PREFIX_WORDS = "can reach 1034 tokens (shared_prefix 1010 + prompt 16 + answer 8), over"


@pytest.mark.parametrize("section, words, command", [  # run makes the same check as validate: one run is enough
    (LONG_ANSWER, ANSWER_WORDS, ["config", "validate"]), (LONG_ANSWER, ANSWER_WORDS, ["run"]),
    (LONG_PREFIX, PREFIX_WORDS, ["config", "validate"])])
def test_a_request_longer_than_the_context_is_refused_in_one_line(tmp_path, tiny_model_path, section, words,
                                                                   command):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\nmodel: {tiny_model_path}\nscenario: serving\ndevice: cpu\nmax_output_tokens: 8\n"
                   f"serving: {{arrival: poisson, rate: 1, {section}}}\n")
    out = run_lem(*command, str(cfg), cwd=tmp_path)
    lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and len(lines) == 1 and words in lines[0], lines


def test_a_longest_answer_the_timeout_would_cut_on_a_slow_server_is_warned_about(tmp_path, tiny_model_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\nmodel: {tiny_model_path}\nscenario: serving\ndevice: cpu\nmax_output_tokens: 8\n"
                   "max_input_tokens: 64\nserving: {arrival: poisson, rate: 1, request_timeout_s: 20, output_tokens: "
                   "{dist: lognormal, mean: 200, sigma: 1, max: 500}}\n")
    out = run_lem("config", "validate", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ("warning: serving.request_timeout_s: the longest answer (500 tokens) must stream at 25 tokens/s or faster "
            "to end within 20 s") in " ".join(out.stdout.split())
