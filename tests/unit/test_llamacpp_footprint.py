"""The llamacpp dry run reads the GGUF file itself (lem_runner.backends.llamacpp.footprint): weights at the file's own
tensor types, not the converted bf16 folder config.json describes, and the KV cache llama.cpp allocates for n_ctx
at its cache types. Truth: SmolLM2-135M's architecture (30 layers, 3 KV heads of 64) and the file's size on disk."""

from __future__ import annotations

import pytest
from conftest import make_config
from llenergymeasure.memory import Device, estimate
from llenergymeasure.models.embedded import _gguf_path

pytest.importorskip("gguf")

EMBEDDED = "embedded:SmolLM2-135M-Instruct"
#: SmolLM2-135M: 30 layers x 3 KV heads x head_dim 64, keys and values
KV_ELEMENTS_PER_TOKEN = 2 * 30 * 3 * 64


def _footprint(**fields):
    cfg = make_config(backend="llamacpp", model=EMBEDDED, **fields)
    return cfg, cfg.spec.model_footprint(cfg, _gguf_path())


def test_weights_are_the_files_tensor_data_and_kv_is_llama_cpps_cache_for_n_ctx():
    cfg, f = _footprint(max_input_tokens=100, max_output_tokens=28)
    file_bytes = _gguf_path().stat().st_size
    # the Q4_1 file's tensors, not 134.5 M x 2 bytes of a bf16 conversion; the rest of the file is its header
    assert 0 < file_bytes - f.weight_bytes < 4 * 2**20 and f.weight_bytes < 134.5e6 * 2 * 0.5
    assert f.parameters == pytest.approx(134.5e6, rel=0.01)
    assert (f.context_tokens, f.kv_bytes) == (128, KV_ELEMENTS_PER_TOKEN * 2 * 128)  # f16, n_ctx unset: 100 + 28
    _, q8 = _footprint(llamacpp={"n_ctx": 1000, "type_k": "q8_0"})  # q8_0: 34 bytes per block of 32
    assert q8.kv_bytes == int(KV_ELEMENTS_PER_TOKEN / 2 * (34 / 32 + 2) * 1000) and not q8.notes
    _, long = _footprint(llamacpp={"n_ctx": 16384})
    assert "exceeds the GGUF's trained context_length 8192" in long.notes[0]


def test_the_estimate_uses_the_footprint_and_refuses_what_does_not_fit():
    cfg, f = _footprint(max_input_tokens=100, max_output_tokens=28)
    small = Device("cpu", 64 * 2**20, "a 64 MiB host")
    e = estimate(cfg, None, "p", small, f)
    assert (e.weights, e.kv_cache, e.parameters) == (f.weight_bytes, f.kv_bytes, f.parameters)
    assert not e.fits and "but a 64 MiB host offers" in e.problems[0]
    assert estimate(cfg, None, "p", Device("cpu", 2**34, "16 GiB"), f).fits


def test_the_dry_run_path_resolves_the_gguf_and_reads_it():
    from llenergymeasure.memory import estimate_points

    cfg, f = _footprint(max_input_tokens=100, max_output_tokens=28)
    (e,) = estimate_points([("p", cfg)])
    assert (e.weights, e.kv_cache) == (f.weight_bytes, f.kv_bytes) and e.parameters_source.startswith("GGUF header")
