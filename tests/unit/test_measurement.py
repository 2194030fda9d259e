"""Measurement helpers: latency percentiles and TTFT/ITL, FLOPs, prompt loading, and atomic file writes."""

from __future__ import annotations

import os
import stat
from importlib import resources

import numpy
import pytest
from lem_runner.contract.atomic import atomic_write_text
from lem_runner.contract.config import PromptConfig
from lem_runner.measurement.flops import estimate_flops, request_flops
from lem_runner.measurement.latency import RequestTiming, latency_stats, percentile, ttft_and_itl
from lem_runner.prompts import PromptError, load_prompts
from lem_runner.records import ModelShape, ParameterCounts

# --- latency -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1, 2, 3, 4], 50, 2.5), ([1, 2, 3, 4], 90, 3.7), ([1, 2, 3, 4], 0, 1), ([1, 2, 3, 4], 100, 4),
     ([10, 20], 25, 12.5), ([7], 99, 7), ([1, 2, 3, 4, 5], 50, 3)],
)
def test_percentile_hand_computed(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("values", [[3.5], [1.0, 9.0], [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4], list(range(1, 101))])
@pytest.mark.parametrize("q", [0, 1, 33.3, 50, 90, 99, 100])
def test_percentile_matches_numpy_default(values, q):
    assert percentile(sorted(values), q) == pytest.approx(float(numpy.percentile(values, q)), rel=1e-12)


def test_percentile_of_nothing_raises():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ttft_and_itl_from_synthetic_timings():
    requests = [RequestTiming(0.0, [0.25, 0.5, 1.0]), RequestTiming(1.0, [1.5, 1.75])]
    ttft, itl = ttft_and_itl(requests)
    # TTFT per request: 250 ms and 500 ms.
    assert (ttft.n, ttft.mean_ms, ttft.min_ms, ttft.max_ms) == (2, 375.0, 250.0, 500.0)
    assert (ttft.p50_ms, ttft.p90_ms, ttft.p99_ms) == pytest.approx((375.0, 475.0, 497.5))
    # ITL per gap: 250 and 500 ms within the first request, 250 ms within the second.
    assert (itl.n, itl.min_ms, itl.max_ms, itl.p50_ms) == (3, 250.0, 500.0, 250.0)
    assert itl.mean_ms == pytest.approx(1000.0 / 3)
    assert (itl.p90_ms, itl.p99_ms) == pytest.approx((450.0, 495.0))


def test_gaps_are_never_taken_across_requests():
    # Request two starts long after request one ended: a cross-request gap would show up as a 10 s ITL.
    _, itl = ttft_and_itl([RequestTiming(0.0, [0.5, 1.0]), RequestTiming(10.0, [11.0, 11.5])])
    assert (itl.n, itl.max_ms) == (2, 500.0)


def test_single_token_requests_have_ttft_but_no_itl():
    ttft, itl = ttft_and_itl([RequestTiming(2.0, [2.5]), RequestTiming(3.0, [3.25])])
    assert ttft.n == 2 and itl is None


@pytest.mark.parametrize("requests", [[], [RequestTiming(0.0, []), RequestTiming(1.0, [])]])
def test_no_tokens_gives_no_statistics(requests):
    assert ttft_and_itl(requests) == (None, None)
    assert latency_stats([]) is None


# --- FLOPs -------------------------------------------------------------------------------------------------------


def test_parameter_counts_with_tied_head():
    # Tied: the shared matrix is counted once in total (1000 = 100 embedding + 900 body).
    counts = ParameterCounts(total=1000, input_embedding=100, output_projection=100, tied_embeddings=True)
    assert counts.non_embedding == 900
    assert counts.compute == 1000


def test_parameter_counts_with_untied_head():
    counts = ParameterCounts(total=1100, input_embedding=100, output_projection=100, tied_embeddings=False)
    assert counts.non_embedding == 900
    assert counts.compute == 1000


_COUNTS = ParameterCounts(total=1100, input_embedding=100, output_projection=100, tied_embeddings=False)


def test_flops_hand_computed_with_the_attention_term():
    # N_body 900, N_head 100, 2 layers x width 8, prompt 3, output 3 (two decode steps at positions 4 and 5)
    pre, dec = request_flops(_COUNTS, ModelShape(n_layers=2, attention_dim=8), n_in=3, n_out=3)
    assert pre == 2 * 900 * 3 + 2 * 100 + 2 * 2 * 8 * 3 * 4
    assert dec == 2 * (2 * 1000) + 4 * 2 * 8 * (4 + 5)


@pytest.mark.parametrize(("n_in", "n_out"), [(1, 1), (7, 1), (5, 9), (128, 32), (1, 200)])
def test_closed_form_matches_counting_every_token(n_in, n_out):
    """Each prompt position p costs 2 N_body + 4 n d p; the last also the head; each decode step 2 N + 4 n d p."""
    shape = ModelShape(n_layers=3, attention_dim=16)
    attn = lambda p: 4 * shape.n_layers * shape.attention_dim * p  # noqa: E731
    want_pre = sum(2 * 900 + attn(p) for p in range(1, n_in + 1)) + 2 * 100
    want_dec = sum(2 * 1000 + attn(n_in + k) for k in range(1, n_out))
    assert request_flops(_COUNTS, shape, n_in, n_out) == pytest.approx((want_pre, want_dec))


def test_prefill_attention_per_token_is_kaplans_2_nlayer_nctx_dattn():
    """Kaplan et al. (2020): forward FLOPs per token = 2N + 2 n_layer n_ctx d_attn. For a Llama-2-7B shape (32 layers,
    4096 wide) at a 2048-token context, our prefill's attention share per token matches it up to (L+1)/L."""
    shape = ModelShape(n_layers=32, attention_dim=4096)
    no_params = ParameterCounts(total=0, input_embedding=0, output_projection=0, tied_embeddings=True)
    pre, _ = request_flops(no_params, shape, n_in=2048, n_out=1)
    assert pre / 2048 == pytest.approx(2 * 32 * 2048 * 4096 * 2049 / 2048)


def test_estimate_flops_sums_requests_and_omits_attention_without_a_shape():
    pre, dec = estimate_flops(_COUNTS, None, [(10, 5), (4, 1), (0, 0)])
    assert pre == 2 * 900 * 14 + 3 * 2 * 100
    assert dec == 4 * 2 * 1000


# --- prompts -----------------------------------------------------------------------------------------------------


def test_builtin_set_loads_non_empty_strings():
    prompts = load_prompts(PromptConfig(), n=5, seed=0)
    assert len(prompts) == 5
    assert all(isinstance(p, str) and p.strip() for p in prompts)
    assert len(set(prompts)) == 5


def test_builtin_set_cycles_in_order_when_more_are_asked_for():
    builtin = resources.files("lem_runner.prompts").joinpath("builtin.jsonl").read_text(encoding="utf-8")
    size = sum(1 for line in builtin.splitlines() if line.strip())
    prompts = load_prompts(PromptConfig(), n=size * 2 + 3, seed=0)
    assert len(prompts) == size * 2 + 3
    assert prompts[size : 2 * size] == prompts[:size]
    assert prompts[-3:] == prompts[:3]


def test_synthetic_prompts_are_deterministic_per_seed():
    cfg = PromptConfig(source="synthetic", input_tokens=20)
    first = load_prompts(cfg, n=4, seed=1)
    assert load_prompts(cfg, n=4, seed=1) == first
    assert load_prompts(cfg, n=4, seed=2) != first
    assert all(len(p.split()) == 20 + 16 for p in first)


def _jsonl(tmp_path, content: bytes | str, name: str = "prompts.jsonl"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_jsonl_prompts_load_with_a_custom_field_and_skip_blank_lines(tmp_path):
    path = _jsonl(tmp_path, '{"text": "one"}\n\n{"text": "two", "id": 2}\n')
    cfg = PromptConfig(source="jsonl", path=str(path), field="text")
    assert load_prompts(cfg, n=3, seed=0) == ["one", "two", "one"]


def test_jsonl_path_override_wins(tmp_path):
    path = _jsonl(tmp_path, '{"prompt": "from override"}\n')
    cfg = PromptConfig(source="jsonl", path="/nowhere/prompts.jsonl")
    assert load_prompts(cfg, n=1, seed=0, path_override=str(path)) == ["from override"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"prompt": "ok"}\n{"prompt": \n', ":2: not JSON"),
        ('{"prompt": "ok"}\n\n{"other": "x"}\n', ":3: expected an object with a non-empty string 'prompt'"),
        ('{"prompt": ""}\n', ":1: expected an object"),
        ('["prompt"]\n', ":1: expected an object"),
    ],
)
def test_jsonl_line_errors_name_file_and_line(tmp_path, content, needle):
    path = _jsonl(tmp_path, content)
    with pytest.raises(PromptError) as info:
        load_prompts(PromptConfig(source="jsonl", path=str(path)), n=1, seed=0)
    assert str(info.value).startswith(str(path))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b'{"prompt": "caf\xe9"}\n', "not UTF-8"), (b"", "no prompts"), (b"\n  \n", "no prompts")],
)
def test_jsonl_file_errors_name_the_file(tmp_path, content, needle):
    path = _jsonl(tmp_path, content)
    with pytest.raises(PromptError) as info:
        load_prompts(PromptConfig(source="jsonl", path=str(path)), n=1, seed=0)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_missing_jsonl_file_names_the_file(tmp_path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(PromptError, match="absent.jsonl: cannot read prompts file"):
        load_prompts(PromptConfig(source="jsonl", path=str(path)), n=1, seed=0)


# --- atomic writes -----------------------------------------------------------------------------------------------


def test_atomic_write_writes_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "result.json"
    assert atomic_write_text(target, '{"a": "é"}') == target
    atomic_write_text(target, '{"b": 2}')
    assert target.read_text(encoding="utf-8") == '{"b": 2}'
    assert os.listdir(tmp_path) == ["result.json"]


def test_atomic_write_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_atomic_write_into_missing_directory_fails_without_a_file(tmp_path):
    target = tmp_path / "missing-dir" / "result.json"
    with pytest.raises(FileNotFoundError):
        atomic_write_text(target, "{}")
    assert not target.parent.exists()
    assert os.listdir(tmp_path) == []


def test_failure_mid_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "new text with a lone surrogate \ud800")
    assert target.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["result.json"]
