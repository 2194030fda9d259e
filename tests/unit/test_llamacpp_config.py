"""The llamacpp backend's section and spec without llama-cpp-python: its own rules, what it refuses of the
experiment, and how its model resolves to one GGUF file (the embedded model's own, as it is)."""

from __future__ import annotations

import pytest
from conftest import make_config
from llenergymeasure.errors import ConfigError
from llenergymeasure.models import resolve_model
from llenergymeasure.models.embedded import GGUF_FILE
from pydantic import ValidationError

EMBEDDED = "embedded:SmolLM2-135M-Instruct"


def _refusal(**fields) -> str:
    with pytest.raises(ValidationError) as info:
        make_config(backend="llamacpp", **fields)
    return str(info.value)


def test_the_spec_is_registered_and_loads_gguf():
    from lem_runner.contract.backends import backend_spec

    spec = backend_spec("llamacpp")
    assert spec.model_format == "gguf" and spec.batch_field is None and spec.image.has_cpu_variant
    assert spec.engine_section_fields == tuple(spec.config.model_fields)


def test_experiment_fields_it_cannot_apply_are_refused_naming_them():
    assert "dtype: the llamacpp backend runs the GGUF's own tensor types" in _refusal(dtype="float16")
    assert "synthetic_weights" in _refusal(synthetic_weights=True)
    assert "llamacpp.n_ctx 64 is shorter than max_input_tokens + max_output_tokens = 80" in _refusal(
        max_input_tokens=16, max_output_tokens=64, llamacpp={"n_ctx": 64})
    assert "device 'cuda' needs layers offloaded" in _refusal(device="cuda")
    assert "device is 'cpu'" in _refusal(device="cpu", llamacpp={"n_gpu_layers": -1})


def test_its_own_rules_and_owned_pass_through_keys():
    assert "only with flash_attn: true" in _refusal(llamacpp={"type_v": "q8_0"})
    make_config(backend="llamacpp", llamacpp={"type_v": "q8_0", "type_k": "q8_0", "flash_attn": True})
    text = _refusal(llamacpp={"llama_args": {"n_ctx": 128}})
    assert "n_ctx: not a pass-through key; set 'llamacpp.n_ctx' instead" in text
    assert "verbose: not a pass-through key" in _refusal(llamacpp={"llama_args": {"verbose": True}})


def test_an_unset_context_makes_the_lengths_part_of_the_engine():
    spec = make_config(backend="llamacpp").spec
    assert spec.engine_fields_of(make_config(backend="llamacpp")) == ("max_input_tokens", "max_output_tokens")
    assert spec.engine_fields_of(make_config(backend="llamacpp", llamacpp={"n_ctx": 2048})) == ()


def test_the_embedded_model_resolves_to_its_gguf_file_as_it_is():
    model = resolve_model(make_config(backend="llamacpp", model=EMBEDDED))
    assert model.relative == GGUF_FILE and (model.mount_root / GGUF_FILE).is_file()
    assert model.host_path.endswith(GGUF_FILE)


def test_a_gguf_path_a_folder_of_one_and_what_is_refused(tmp_path):
    gguf = tmp_path / "one" / "m.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    for ref in (gguf, gguf.parent):
        model = resolve_model(make_config(backend="llamacpp", model=str(ref)))
        assert (model.mount_root, model.relative) == (gguf.parent, "m.gguf")
    (gguf.parent / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="holds 2; name the file"):
        resolve_model(make_config(backend="llamacpp", model=str(gguf.parent)))
    other = tmp_path / "m.bin"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is not a .gguf"):
        resolve_model(make_config(backend="llamacpp", model=str(other)))
    with pytest.raises(ConfigError, match="no file or folder here"):
        resolve_model(make_config(backend="llamacpp", model=str(tmp_path / "absent.gguf")))


def test_the_image_context_takes_the_locally_built_wheel_or_says_where_it_is_missing(tmp_path, monkeypatch):
    from lem_runner.contract.backends import backend_spec
    from llenergymeasure.errors import SetupError
    from llenergymeasure.images.build import _link_local_wheels

    spec = backend_spec("llamacpp")
    cache, ctx = tmp_path / "cache", tmp_path / "ctx"
    cache.mkdir()
    ctx.mkdir()
    monkeypatch.setenv("LEM_WHEEL_DIR", str(cache))  # where `make llamacpp-wheel` builds it
    with pytest.raises(SetupError, match=rf"llama_cpp_python-\*\.whl, and {cache} has none"):
        _link_local_wheels(spec, ctx)
    wheel = cache / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"PK")
    _link_local_wheels(spec, ctx)
    assert (ctx / wheel.name).read_bytes() == b"PK"


def test_a_backend_without_a_gpu_image_is_not_offered_one():
    from llenergymeasure.images.build import build_image
    from llenergymeasure.images.catalog import image_variants

    assert image_variants("llamacpp") == (True,) and image_variants("pytorch") == (True, False)
    with pytest.raises(ConfigError, match="'llamacpp' has no GPU image variant"):
        build_image(None, "llamacpp", cpu=False)  # refused before any engine is asked (it was a KeyError)


def test_a_served_llamacpp_model_is_measured_on_the_device_its_layers_are_on():
    """device: auto on a GPU host would read NVML for a server whose layers are all on the CPU: the serving run asks
    the spec (n_gpu_layers decides), and a model offloaded to the GPU is a GPU run even where torch cannot tell."""
    from lem_runner.serving.run import device_kind

    on_cpu = make_config(backend="llamacpp", scenario="serving", serving={"rate": 1.0}, llamacpp={"n_gpu_layers": 0})
    offloaded = make_config(backend="llamacpp", scenario="serving", serving={"rate": 1.0},
                            llamacpp={"n_gpu_layers": -1})
    assert on_cpu.spec.device_kind_of(on_cpu) == "cpu" and device_kind(on_cpu) == ("cpu", None)
    assert offloaded.spec.device_kind_of(offloaded) == "cuda" and device_kind(offloaded)[0] == "cuda"
    gpu_host = lambda: (True, "12.4")  # noqa: E731 — a host where torch sees a GPU
    assert device_kind(on_cpu, gpu_host) == ("cpu", None) and device_kind(offloaded, gpu_host) == ("cuda", "12.4")
    auto = make_config(backend="pytorch", scenario="serving", serving={"rate": 1.0})
    assert device_kind(auto, gpu_host) == ("cuda", "12.4") and device_kind(auto, lambda: (False, None))[0] == "cpu"
    pytorch = make_config(backend="pytorch", device="cpu")
    assert pytorch.spec.device_kind_of(pytorch) is None and device_kind(pytorch) == ("cpu", None)
