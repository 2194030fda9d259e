"""`lem run --dry-run`: the memory estimate against hand-computed values (docs/method.md, "Memory estimate"), and a
point that cannot fit refused with its numbers, for a study and for one experiment, with nothing written."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from conftest import write_yaml
from lem_runner.contract import ExperimentConfig
from llenergymeasure.cli.app import main
from llenergymeasure.memory import GIB, Device, estimate
from llenergymeasure.plan import RunOptions, dry_run

SMALL = {"architectures": ["LlamaForCausalLM"], "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "tie_word_embeddings": False, "torch_dtype": "float32"}
#: a Llama-3.1-405B-sized config.json (no weights): ~406e9 parameters, ~756 GiB in bfloat16
HUGE = {"architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 16384,
        "intermediate_size": 53248, "num_hidden_layers": 126, "num_attention_heads": 128, "num_key_value_heads": 8,
        "torch_dtype": "bfloat16"}


def _model(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _lem(*args: str) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


def test_the_estimate_matches_the_hand_computed_formula(tmp_path):
    model = _model(tmp_path / "small", SMALL)
    config = ExperimentConfig(model=str(model), device="cpu", dtype="float32", n_prompts=8, max_input_tokens=32,
                              max_output_tokens=16, pytorch={"batch_size": 4})
    e = estimate(config, model, "p", Device("cpu", 10**6, "test host"))
    # parameters: embedding 1000*64 = 64000; per layer q,o 2*64*64 + k,v 2*64*32 = 12288, MLP 3*64*128 = 24576,
    # norms 2*64 = 128 -> 36992, x2 layers = 73984; final norm 64; untied head 64000: 202048, float32: 4 bytes each
    assert e.parameters == 202048 and e.weights == 202048 * 4
    # KV: 2 (K and V) x 2 layers x 2 kv heads x 16 head dim x (32 + 16) tokens x batch 4 x 4 bytes
    assert e.batch == 4 and e.kv_cache == 2 * 2 * 2 * 16 * 48 * 4 * 4 == 98304
    # activations: 4*32 prompt tokens x (4*64 + 2*128) x 4 bytes + last-position logits 4 x 1000 x 4 (float32)
    # + one layer's attention scores 4 x 4 heads x 32^2 x 4 bytes (pytorch)
    assert e.activations == 128 * 512 * 4 + 4 * 1000 * 4 + 4 * 4 * 32 * 32 * 4 == 343680
    assert e.total == 808192 + 98304 + 343680 == 1250176
    assert not e.fits and "needs ~1.19 MiB" in e.refusal() and "test host offers 0.95 MiB" in e.refusal()
    assert estimate(config, model, "p", Device("cpu", 2 * 10**6, "test host")).fits


def test_the_batch_is_the_backends_knob_or_its_default_capped_by_the_prompts(tmp_path):
    model = _model(tmp_path / "small", SMALL)
    h100 = Device("cuda", 80 * GIB, "1x NVIDIA H100 80GB HBM3")
    a100 = Device("cuda", 80 * GIB, "1x NVIDIA A100-SXM4-80GB")

    def batch(device, **fields):
        return estimate(ExperimentConfig(model=str(model), **fields), model, "p", device).batch

    # vLLM's LLM class defaults: 1024 sequences on a >= 70 GiB GPU other than an A100, else 256
    assert batch(h100, backend="vllm", n_prompts=5000) == 1024
    assert batch(a100, backend="vllm", n_prompts=5000) == 256
    assert batch(h100, backend="vllm", n_prompts=5000, vllm={"max_num_seqs": 32}) == 32
    assert batch(h100, backend="vllm", n_prompts=10) == 10  # never more in flight than there are prompts
    assert batch(h100, backend="tensorrt", n_prompts=100, tensorrt={"max_batch_size": 16}) == 16
    # vLLM on a GPU preallocates gpu_memory_utilization of it: that is the budget
    e = estimate(ExperimentConfig(model=str(model), backend="vllm", vllm={"gpu_memory_utilization": 0.5}), model,
                 "p", h100)
    assert e.budget == 40 * GIB and "0.5 x" in e.budget_rule


def test_vllm_on_cpu_counts_its_kv_space_and_refuses_a_sequence_it_cannot_hold(tmp_path):
    model = _model(tmp_path / "huge", HUGE)
    config = ExperimentConfig(model=str(model), backend="vllm", device="cpu", max_input_tokens=8192,
                              max_output_tokens=8192)
    e = estimate(config, model, "p", Device("cpu", 4096 * GIB, "big host"))
    assert e.kv_cache == 1 * GIB  # vllm.cpu_kvcache_space_gib, preallocated whatever the batch
    # one 16384-token sequence: 2 x 126 x 8 x 128 x 16384 x 2 bytes = 7.875 GiB > 1 GiB
    assert not e.fits and "7.88 GiB of KV cache, more than vllm.cpu_kvcache_space_gib 1.00 GiB" in e.refusal()


def test_dry_run_of_a_study_prints_every_point_and_refuses_the_one_that_cannot_fit(tmp_path, tiny_model_path):
    huge = _model(tmp_path / "huge", HUGE)
    study = write_yaml(tmp_path / "s.yaml", f"""\
name: mem
base: {{n_prompts: 2, max_output_tokens: 4, device: cpu}}
sweep:
  model: [{tiny_model_path}, {huge}]
""")
    code, text = _lem("run", str(study), "-o", str(tmp_path / "r"), "--dry-run")
    assert code == 2, text
    assert "memory estimate" in text and "yes" in text and "no" in text  # the table: the tiny model fits
    refusal = text[text.index("error:"):]
    assert f"model={huge}" in refusal and f"model={tiny_model_path}" not in refusal
    assert "weights 755.96 GiB" in refusal and "host RAM (available) offers" in refusal
    assert not (tmp_path / "r").exists()  # nothing written


def test_dry_run_of_one_experiment_and_through_the_api(tmp_path, tiny_model_path):
    code, text = _lem("run", "--model", str(tiny_model_path), "--device", "cpu", "-o", str(tmp_path / "r"),
                      "--dry-run")
    assert code == 0 and "yes" in text and not (tmp_path / "r").exists()
    huge = _model(tmp_path / "huge", HUGE)
    code, text = _lem("run", "--model", str(huge), "--device", "cpu", "-o", str(tmp_path / "r"), "--dry-run")
    assert code == 2 and "needs ~" in text and "GiB" in text
    planned, estimates = dry_run({"model": str(huge), "device": "cpu"}, RunOptions(output=tmp_path / "r"))
    (e,) = estimates
    # ~405.85e9 parameters (the Llama-like formula over config.json) x 2 bytes (bfloat16)
    assert round(e.parameters / 1e9, 2) == 405.85 and e.weights == e.parameters * 2 and not e.fits


def test_vllm_on_a_gpu_is_refused_only_without_room_for_one_sequence(tmp_path):
    model = _model(tmp_path / "small", {**SMALL, "torch_dtype": "bfloat16"})
    h100 = Device("cuda", 80 * GIB, "1x NVIDIA H100")

    def at(n_prompts, memory):
        config = ExperimentConfig(model=str(model), backend="vllm", n_prompts=n_prompts, max_input_tokens=1024,
                                  max_output_tokens=1024)
        return estimate(config, model, "p", Device("cuda", memory, h100.name))

    # one 2048-token sequence: 2 x 2 x 2 x 16 x 2048 x 2 bytes = 512 KiB; weights 202048 x 2 bytes
    big = at(1024, 80 * GIB)
    assert big.fits and not big.notes and big.kv_cache == 1024 * 512 * 1024
    short = at(1024, int(64 * 2**20 / 0.9))  # 64 MiB budget: the 512 MiB batch does not fit, one sequence does
    assert short.fits and "vllm will run fewer sequences at once" in short.notes[0]
    tiny = at(1024, int(2**20 / 0.9))  # 1 MiB: not even the weights, activations and one sequence
    assert not tiny.fits and "for one sequence" in tiny.refusal()


def test_the_dry_run_shows_the_batch_as_the_result_and_the_list_do(tmp_path):
    """One batch figure everywhere (docs/method.md, "Batch size"): the batch knob's value. Four prompts with
    pytorch.batch_size 8 ran as one call of 4: the dry run says batch 8 (as the summary's `batch 8` and the list's
    `bs=8` do) and adds that at most 4 run at once; vLLM with max_num_seqs unset shows its default, 256, as the result
    reads it back (the old dry run showed 4 and 16, the prompts, against the result's 8 and 256)."""
    from conftest import make_config, make_result
    from llenergymeasure.render.summary import batch_text
    from llenergymeasure.results.columns import batch_size
    from llenergymeasure.results.discover import Experiment

    model = _model(tmp_path / "small", SMALL)
    write_yaml(tmp_path / "b.yaml", f"model: {model}\nn_prompts: 4\ndevice: cpu\npytorch: {{batch_size: 8}}\n")
    code, out = _lem("run", str(tmp_path / "b.yaml"), "--dry-run")
    assert code == 0, out
    (row,) = [line for line in out.splitlines() if line.startswith("small-pytorch ")]
    assert row.split()[2] == "8", out  # point, params, batch
    assert "batch 8 (pytorch.batch_size; 4 prompt(s), so at most 4 at once)" in " ".join(out.split())
    result = make_result(config=make_config(n_prompts=4, pytorch={"batch_size": 8}), batch_size=8,
                         batch_knob="pytorch.batch_size")
    assert batch_text(result) == "batch 8 (pytorch.batch_size; 4 prompt(s), so at most 4 at once)"
    assert batch_size(Experiment(tmp_path, result)) == 8
    cpu = Device("cpu", 64 * GIB, "host RAM")
    vllm = estimate(ExperimentConfig(model=str(model), backend="vllm", n_prompts=16), model, "v", cpu)
    assert (vllm.batch_size, vllm.batch) == (256, 16)  # the knob's default; the estimate holds the 16 prompts
