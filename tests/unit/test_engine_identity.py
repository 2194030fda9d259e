"""Engine identity (lem_runner.contract.engine): every config field is classified, engine fields change the identity
per backend, run fields do not; and the schedule groups a cycle's runs by engine only when asked."""

from __future__ import annotations

import pytest
from lem_runner.contract import (
    ExperimentConfig,
    backend_names,
    backend_spec,
    engine_identity,
    engine_settings,
    reuse_refusal,
)
from lem_runner.contract.engine import (
    ENGINE_TOP_FIELDS,
    RUN_TOP_FIELDS,
    engine_section_fields,
    run_section_fields,
)
from llenergymeasure.study.order import group_by_engine, schedule


def test_every_config_field_is_classified():
    """Adding a field to ExperimentConfig or a backend section without deciding engine vs run fails here."""
    top = set(ExperimentConfig.model_fields)
    classified = set(ENGINE_TOP_FIELDS) | set(RUN_TOP_FIELDS) | set(backend_names())
    assert top == classified, f"unclassified: {top - classified}; stale: {classified - top}"
    assert not set(ENGINE_TOP_FIELDS) & set(RUN_TOP_FIELDS)
    for backend in backend_names():  # a section's engine fields are its spec's; the rest belong to the run
        section = set(backend_spec(backend).config.model_fields)
        engine, run = set(engine_section_fields(backend)), set(run_section_fields(backend))
        assert engine <= section and section == engine | run and not engine & run
    assert {"batch_size", "generate_kwargs", "cache_implementation"} <= set(run_section_fields("pytorch"))
    assert {"torch_compile", "quantization", "model_kwargs"} <= set(engine_section_fields("pytorch"))


def _cfg(backend: str, **kw) -> ExperimentConfig:
    base = {"backend": backend, "model": "m"}
    if backend == "tensorrt":
        base["device"] = "cuda"
    return ExperimentConfig.model_validate({**base, **kw})


ENGINE_CHANGES = {
    "pytorch": [{"model": "other"}, {"dtype": "float16"}, {"devices": [1]}, {"device": "cpu"},
                {"synthetic_weights": True}, {"seed": 7}, {"runner": "docker"},
                {"pytorch": {"attn_implementation": "sdpa"}}],
    "vllm": [{"vllm": {"max_num_seqs": 4}}, {"vllm": {"max_model_len": 2048}}, {"vllm": {"gpu_memory_utilization": 0.5}},
             {"vllm": {"enforce_eager": True}}, {"vllm": {"kv_cache_dtype": "fp8"}}, {"vllm": {"block_size": 32}},
             {"vllm": {"enable_prefix_caching": True}}, {"vllm": {"cpu_kvcache_space_gib": 2}},
             {"vllm": {"quantization": "awq"}}, {"dtype": "bfloat16"},
             {"vllm": {"tensor_parallel_size": 2}, "devices": [0, 1]}],
    "tensorrt": [{"tensorrt": {"max_batch_size": 8}}, {"tensorrt": {"max_num_tokens": 4096}},
                 {"tensorrt": {"max_seq_len": 2048}}, {"tensorrt": {"llm_backend": "tensorrt"}},
                 {"tensorrt": {"kv_cache_free_gpu_memory_fraction": 0.5}}],
}

RUN_CHANGES = [{"n_prompts": 3}, {"max_output_tokens": 9}, {"max_input_tokens": 100}, {"force_output_length": True},
               {"decoding": {"do_sample": True, "temperature": 0.5}}, {"warmup": {"n_batches": 3}},
               {"window": {"mode": "steady_state"}}, {"energy": {"sample_hz": 5}}, {"name": "x"},
               {"prompts": {"source": "synthetic", "input_tokens": 16}}, {"gpu": {"power_limit_w": 200}},
               {"carbon": {"grid_intensity_g_per_kwh": 300}}]


@pytest.mark.parametrize("backend", ["pytorch", "vllm", "tensorrt"])
def test_engine_fields_change_identity_run_fields_do_not(backend):
    base = _cfg(backend)
    for change in ENGINE_CHANGES[backend]:
        assert engine_identity(_cfg(backend, **change)) != engine_identity(base), change
    for change in RUN_CHANGES:
        assert engine_identity(_cfg(backend, **change)) == engine_identity(base), change


def test_batch_size_does_not_define_a_pytorch_engine():
    assert engine_identity(_cfg("pytorch", pytorch={"batch_size": 8})) == engine_identity(_cfg("pytorch"))


def test_other_backends_sections_do_not_count():
    """A config holds only its own backend's section (another's is refused), so only that one can count."""
    with pytest.raises(ValueError, match="settings for backend 'vllm'"):
        _cfg("pytorch", vllm={"max_num_seqs": 4})
    assert "vllm" not in engine_settings(_cfg("pytorch")) and "vllm.max_num_seqs" not in engine_settings(_cfg("pytorch"))


def test_a_built_tensorrt_engine_fixes_its_input_length():
    built = {"tensorrt": {"llm_backend": "tensorrt"}}
    assert engine_identity(_cfg("tensorrt", max_input_tokens=100, **built)) != engine_identity(_cfg("tensorrt", **built))
    assert engine_identity(_cfg("tensorrt", max_input_tokens=100)) == engine_identity(_cfg("tensorrt"))


def test_leaky_engines_and_servers_lem_does_not_own_are_refused():
    assert reuse_refusal(_cfg("vllm")) is None
    assert reuse_refusal(_cfg("vllm", vllm={"enable_prefix_caching": True})) is None  # reset before each run
    assert "block_reuse" in reuse_refusal(_cfg("tensorrt", tensorrt={"kv_cache_enable_block_reuse": True}))
    load = {"arrival": "constant", "rate": 2}
    assert reuse_refusal(_cfg("pytorch", scenario="serving", serving=load)) is None  # one server across rates
    assert reuse_refusal(_cfg("vllm", scenario="serving", serving=load)) is None
    assert "trtllm-serve" in reuse_refusal(_cfg("tensorrt", scenario="serving", serving=load))
    assert "endpoint" in reuse_refusal(_cfg("pytorch", scenario="serving",
                                            serving={**load, "endpoint": "http://127.0.0.1:9/v1"}))


def _leaves(node, prefix=()):
    """Every scalar in a config dump, by path."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*prefix, k))
    else:
        yield prefix, node


def _perturbed(value):
    """Other values of a scalar's type, to try in its place (the config decides which are valid)."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value * 2 + 3]
    if isinstance(value, float):
        return [value * 0.5, value + 1.0]
    if value is None:
        return [1, 8, True, 0.5]
    return []


def _with(dump: dict, path: tuple, value) -> dict:
    import copy

    out = copy.deepcopy(dump)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("backend", ["pytorch", "vllm"])
def test_serving_runs_share_an_engine_only_when_they_would_start_the_same_server(backend):
    """The truth is the server command itself: change any scalar of a serving config (one at a time, every value
    the config accepts); whenever the command it would start differs (port aside), the identity must differ too.
    And the run-level values do change the command for pytorch (its batch cap and default max_tokens), so the
    identity is not merely the offline one."""
    from lem_runner.serving.servers import server_command

    base = _cfg(backend, scenario="serving", device="cpu", serving={"arrival": "poisson", "rate": 4})
    dump = base.model_dump(mode="json", exclude_unset=False)

    def command(cfg):
        c = server_command(cfg, "/models/m", 8000, cfg.device == "cpu")
        return (c.argv, sorted(c.env.items()), c.reset_routes)

    ref_cmd, ref_id = command(base), engine_identity(base)
    tried = differs = 0
    for path, value in _leaves(dump):
        for other in _perturbed(value):
            try:
                cfg = ExperimentConfig.model_validate(_with(dump, path, other))
            except ValueError:
                continue
            tried += 1
            if command(cfg) != ref_cmd:
                differs += 1
                assert engine_identity(cfg) != ref_id, f"{'.'.join(path)}={other!r} changes the server, not the identity"
    assert tried > 30 and differs > 3
    if backend == "pytorch":
        assert engine_identity(base.model_copy(update={"max_output_tokens": 9})) != ref_id
        batch = base.model_copy(update={"pytorch": base.pytorch.model_copy(update={"batch_size": 4})})
        assert engine_identity(ExperimentConfig.model_validate(batch.model_dump())) != ref_id
    # the load itself never changes it: rate points share one server
    faster = ExperimentConfig.model_validate(_with(dump, ("serving", "rate"), 16.0))
    assert engine_identity(faster) == ref_id


def test_group_by_engine_keeps_order_within_groups_and_cycles():
    points = ["a", "b", "c", "d"]
    engines = ["e1", "e2", "e1", "e2"]
    runs = schedule(points, 2, "interleave")
    assert group_by_engine(runs, engines) == [(0, 1), (2, 1), (1, 1), (3, 1), (0, 2), (2, 2), (1, 2), (3, 2)]
    # latin square: each cycle's own order decides which engine goes first and the order inside each group
    latin = schedule(points, 4, "latin_square")
    grouped = group_by_engine(latin, engines)
    assert sorted(grouped) == sorted(latin)
    for c in range(1, 5):
        cycle = [p for p, cc in latin if cc == c]
        got = [p for p, cc in grouped if cc == c]
        first = engines[cycle[0]]
        assert got == [p for p in cycle if engines[p] == first] + [p for p in cycle if engines[p] != first]
    # sequential: a cycle's runs are never adjacent, nothing moves
    seq = schedule(points, 3, "sequential")
    assert group_by_engine(seq, engines) == seq


def _manifest_order(tmp_path, reuse: bool) -> list[tuple[str, int]]:
    from llenergymeasure.study import StudyConfig, expand_study
    from llenergymeasure.study.manifest import new_manifest

    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "config.json").write_text("{}")
    study = StudyConfig.model_validate({
        "name": "g", "n_cycles": 2, "order": "interleave", "engine_reuse": reuse,
        "base": {"model": str(tmp_path / "m")},
        "sweep": {"max_output_tokens": [3, 4], "dtype": ["float32", "float16"]}})
    manifest = new_manifest(study, expand_study(study))
    return [(e.label, e.cycle) for e in manifest.entries], manifest


def test_engine_reuse_groups_each_cycle_by_engine_in_the_manifest(tmp_path):
    plain, m_off = _manifest_order(tmp_path, False)
    grouped, m_on = _manifest_order(tmp_path, True)
    # interleave alternates dtypes (two engines); reuse puts each engine's runs together, cycle by cycle
    assert [label for label, _ in plain[:4]] == ["max_output_tokens=3, dtype=float32", "max_output_tokens=3, dtype=float16",
                                                "max_output_tokens=4, dtype=float32", "max_output_tokens=4, dtype=float16"]
    assert [label for label, _ in grouped[:4]] == ["max_output_tokens=3, dtype=float32", "max_output_tokens=4, dtype=float32",
                                                  "max_output_tokens=3, dtype=float16", "max_output_tokens=4, dtype=float16"]
    assert [c for _, c in grouped] == [1, 1, 1, 1, 2, 2, 2, 2] and sorted(grouped) == sorted(plain)
    assert m_on.engine_reuse and not m_off.engine_reuse and m_on.config_hash != m_off.config_hash
    assert len({p.engine for p in m_on.points}) == 2


def test_runs_that_cannot_share_an_engine_keep_their_place(tmp_path):
    from llenergymeasure.study import StudyConfig, expand_study
    from llenergymeasure.study.manifest import new_manifest

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    study = StudyConfig.model_validate({
        "name": "s", "order": "interleave", "base": {"model": str(tmp_path / "m"), "runner": "slurm"},
        "sweep": {"dtype": ["float32", "float16"], "max_output_tokens": [3, 4]}})
    entries = new_manifest(study, expand_study(study)).entries
    assert [e.point for e in entries] == [0, 1, 2, 3]  # Slurm runs one job per run: nothing regrouped
