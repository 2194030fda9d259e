"""On an NVIDIA machine: the pytorch settings that need a GPU, for real on the tiny Llama (`pytest -m gpu`). Written
where no GPU was available: none of this has run yet.

- ``device_map: auto`` spreads the model over every GPU in ``devices`` (accelerate's device map is recorded);
- ``quantization: bitsandbytes-int8`` / ``torchao-int8-weight-only`` load quantized where their library is installed;
- ``torch_compile`` + ``cache_implementation: static`` compile on CUDA (dynamo's graph count is recorded).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import run_lem, write_yaml

pytestmark = pytest.mark.gpu


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _run(tmp_path, model, pytorch: str, devices: str = "[0]") -> dict:
    cfg = write_yaml(tmp_path / "g.yaml", f"""\
model: {model}
device: cuda
devices: {devices}
runner: local
n_prompts: 4
max_output_tokens: 8
force_output_length: true
pytorch:
  batch_size: 2
{pytorch}""")
    out = tmp_path / "r"
    proc = run_lem("run", str(cfg), "-o", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr
    (exp,) = out.iterdir()
    return json.loads((exp / "result.json").read_text())


@pytest.mark.skipif(not importlib.util.find_spec("torch") or _gpus() < 2, reason="needs two GPUs")
def test_device_map_auto_spreads_the_model_over_the_devices(tmp_path, tiny_model_path):
    result = _run(tmp_path, tiny_model_path, "  device_map: balanced\n", devices="[0, 1]")
    placed = set(result["engine_settings"]["hf_device_map"].values())
    assert placed == {0, 1}, placed
    assert len(result["energy"]["devices"]) == 2  # both GPUs measured


@pytest.mark.parametrize(("method", "library"), [("bitsandbytes-int8", "bitsandbytes"),
                                                 ("torchao-int8-weight-only", "torchao")])
def test_quantization_loads_quantized(tmp_path, tiny_model_path, method, library):
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")
    settings = _run(tmp_path, tiny_model_path, f"  quantization: {method}\n")["engine_settings"]
    assert settings["quantization_config"]["quant_method"] in ("bitsandbytes", "torchao")


def test_torch_compile_with_a_static_cache_compiles_on_cuda(tmp_path, tiny_model_path):
    settings = _run(tmp_path, tiny_model_path, "  torch_compile: true\n  cache_implementation: static\n")[
        "engine_settings"]
    assert settings["kv_cache_class"] == "StaticCache" and settings["torch_compile_graphs"] >= 1
