"""What a serving run records of the server it ran on: the settings read back from the server itself."""

from __future__ import annotations


def test_the_engine_config_vllm_logs_at_start_is_read_back():
    # the line as vLLM's engine core logs it ("Initializing a V1 LLM engine (v%s) with config: %s", the VllmConfig's
    # str), cut short; values with commas inside (dicts) are not among the keys read
    from lem_runner.serving.lifecycle import logged_engine_config

    log = ("INFO 12-07 00:10:00 [core.py:77] Initializing a V1 LLM engine (v0.32.0) with config: model='/lem/model', "
           "speculative_config=None, tokenizer='/lem/model', skip_tokenizer_init=False, tokenizer_mode=auto, "
           "revision=None, trust_remote_code=False, dtype=torch.bfloat16, max_seq_len=512, download_dir=None, "
           "load_format=auto, tensor_parallel_size=1, pipeline_parallel_size=1, data_parallel_size=1, "
           "quantization=None, enforce_eager=True, kv_cache_dtype=auto, device_config=cpu, seed=0, "
           "served_model_name=lem, enable_prefix_caching=False, enable_chunked_prefill=True, "
           "compilation_config={'level': 0, 'custom_ops': ['none'], 'splitting_ops': None}\n"
           "INFO 12-07 00:10:05 [api_server.py:1] Starting vLLM server on http://127.0.0.1:8000\n")
    got = logged_engine_config(log)
    assert got == {"dtype": "bfloat16", "max_seq_len": 512, "quantization": None, "enforce_eager": True,
                   "kv_cache_dtype": "auto", "tensor_parallel_size": 1, "pipeline_parallel_size": 1,
                   "data_parallel_size": 1, "device_config": "cpu", "seed": 0, "enable_prefix_caching": False,
                   "enable_chunked_prefill": True, "load_format": "auto", "served_model_name": "lem"}
    assert logged_engine_config("no config line here\n") == {}
