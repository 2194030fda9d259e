"""TensorRT-LLM's server: ``trtllm-serve serve MODEL`` on the PyTorch workflow (its documented CLI: --host, --port,
--backend, --max_batch_size, --max_num_tokens, --max_seq_len, --tp_size, --pp_size,
--kv_cache_free_gpu_memory_fraction)."""

from __future__ import annotations

from lem_runner.backends.server import ServerCommand
from lem_runner.contract.config import ExperimentConfig


def tensorrt_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool = False) -> ServerCommand:
    t = cfg.tensorrt
    argv = ["trtllm-serve", "serve", model_path, "--host", "127.0.0.1", "--port", str(port), "--backend", "pytorch",
            "--tp_size", str(t.tensor_parallel_size), "--pp_size", str(t.pipeline_parallel_size),
            "--kv_cache_free_gpu_memory_fraction", str(t.kv_cache_free_gpu_memory_fraction)]
    for key, value in (("max_batch_size", t.max_batch_size), ("max_num_tokens", t.max_num_tokens),
                       ("max_seq_len", t.max_seq_len)):
        if value is not None:
            argv += [f"--{key}", str(value)]
    return ServerCommand("trtllm-serve", argv, batch_size=t.max_batch_size)
