"""Container containment as plain data (container_options), wants_gpu, and select_launcher, with no Docker engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_config
from lem_runner.contract import RunRequest
from llenergymeasure.errors import SetupError
from llenergymeasure.host.inventory import backend_installed
from llenergymeasure.launchers import LaunchSpec
from llenergymeasure.launchers.docker import DockerLauncher, container_options, wants_gpu
from llenergymeasure.launchers.local import LocalLauncher
from llenergymeasure.launchers.select import select_launcher
from llenergymeasure.models import ResolvedModel

TOKEN_VALUE = "hf_TOPSECRETtokenValue1234567890"


def _spec(tmp_path: Path, model: ResolvedModel | None = None, **config) -> LaunchSpec:
    exchange = tmp_path / "results" / "exp-1"
    exchange.mkdir(parents=True, exist_ok=True)
    if model is None:
        (tmp_path / "model").mkdir(exist_ok=True)
        model = ResolvedModel(str(tmp_path / "model"), mount_root=tmp_path / "model")
    cfg = make_config(model=model.reference, **config)
    return LaunchSpec(exchange_dir=exchange, request=RunRequest(experiment_id="exp-1", config=cfg,
                                                                model_path=model.host_path), model=model)


def _binds(options: dict) -> dict[str, tuple[str, str]]:
    """container path -> (host path, mode)"""
    return {v["bind"]: (host, v["mode"]) for host, v in options["volumes"].items()}


@pytest.fixture
def options(tmp_path) -> dict:
    return container_options(_spec(tmp_path), "llenergymeasure/pytorch:test-cpu", use_gpu=False, token_file=None)


def test_the_container_is_locked_down(options):
    assert options["privileged"] is False
    assert options["cap_drop"] == ["ALL"]
    assert "no-new-privileges" in options["security_opt"]
    assert options["read_only"] is True
    assert set(options["tmpfs"]) == {"/tmp"}
    assert options["user"] == f"{os.getuid()}:{os.getgid()}"
    assert options["image"] == "llenergymeasure/pytorch:test-cpu"


def test_no_network_unless_a_download_is_allowed(tmp_path, options):
    assert options["network_mode"] == "none"
    assert options["environment"]["HF_HUB_OFFLINE"] == "1"
    allowed = container_options(_spec(tmp_path, allow_model_download=True), "img", False, None)
    assert allowed["network_mode"] == "bridge"
    assert allowed["environment"]["HF_HUB_OFFLINE"] == "0"


def test_only_the_exchange_dir_is_writable_and_the_model_is_read_only(tmp_path, options):
    binds = _binds(options)
    assert binds["/lem/exchange"] == (str((tmp_path / "results" / "exp-1").resolve()), "rw")
    assert binds["/lem/model"] == (str(tmp_path / "model"), "ro")
    assert [path for path, (_, mode) in binds.items() if mode == "rw"] == ["/lem/exchange"]
    assert options["command"] == ["--config", "/lem/exchange/request.json", "--out", "/lem/exchange"]


def test_containers_carry_lem_labels(options):
    assert options["labels"]["lem.managed"] == "true"
    assert options["labels"]["lem.experiment"] == "exp-1"
    assert options["labels"]["lem.backend"] == "pytorch"


def test_no_token_reaches_the_container_by_default(options):
    assert not any("TOKEN" in key for key in options["environment"])
    assert "/run/secrets/hf_token" not in _binds(options)


def test_a_token_is_a_read_only_file_and_its_value_appears_nowhere(tmp_path):
    token_file = tmp_path / "secret" / "hf_token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN_VALUE)
    hub = ResolvedModel("org/name", hub_id="org/name")
    options = container_options(_spec(tmp_path, model=hub, allow_model_download=True), "img", False, token_file)
    assert _binds(options)["/run/secrets/hf_token"] == (str(token_file), "ro")
    assert options["environment"]["HF_TOKEN_PATH"] == "/run/secrets/hf_token"
    assert "HF_TOKEN" not in options["environment"]
    assert TOKEN_VALUE not in repr(options)
    assert [path for path, (_, mode) in _binds(options).items() if mode == "rw"] == ["/lem/exchange"]


def test_a_hub_id_model_gets_no_model_mount(tmp_path):
    hub = ResolvedModel("org/name", hub_id="org/name")
    options = container_options(_spec(tmp_path, model=hub, allow_model_download=True), "img", False, None)
    assert set(_binds(options)) == {"/lem/exchange"}


def test_gpus_are_requested_by_the_configs_device_ids(tmp_path, options):
    assert "device_requests" not in options
    gpu = container_options(_spec(tmp_path, device="cuda", devices=[3]), "img", use_gpu=True, token_file=None)
    [request] = gpu["device_requests"]
    assert request["DeviceIDs"] == ["3"]
    assert request["Capabilities"] == [["gpu"]]


@pytest.mark.parametrize(
    ("device", "host_gpus", "expected"),
    [("cuda", 0, True), ("cuda", 2, True), ("auto", 1, True), ("auto", 0, False), ("cpu", 0, False), ("cpu", 4, False)],
)
def test_wants_gpu(device, host_gpus, expected):
    assert wants_gpu(make_config(device=device), host_gpus) is expected


# --- select_launcher --------------------------------------------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch):
    """Point the docker SDK at a socket that does not exist: any contact with an engine would fail."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/lem-tests/docker.sock")


def test_docker_colon_image_selects_that_image(no_engine):
    launcher = select_launcher(make_config(runner="docker:my/runner:1"))
    assert isinstance(launcher, DockerLauncher)
    assert launcher.image == "my/runner:1"


def test_an_image_flag_wins_over_the_configs_image(no_engine):
    assert select_launcher(make_config(runner="docker:my/runner:1"), image="other:2").image == "other:2"
    assert select_launcher(make_config(runner="local"), image="other:2").image == "other:2"


@pytest.mark.parametrize(("runner", "isolated"), [("auto", True), ("local", True), ("docker", False)])
def test_isolated_or_docker_selects_the_default_image_container(no_engine, runner, isolated):
    launcher = select_launcher(make_config(runner=runner), isolated=isolated)
    assert isinstance(launcher, DockerLauncher)
    assert launcher.image is None
    assert launcher.name == "docker"


def test_local_selects_a_subprocess():
    assert isinstance(select_launcher(make_config(runner="local")), LocalLauncher)


def test_auto_runs_locally_when_the_backend_is_installed_here():
    if not backend_installed("pytorch"):
        pytest.skip("torch/transformers are not installed in this environment")
    launcher = select_launcher(make_config(runner="auto"))
    assert isinstance(launcher, LocalLauncher)
    assert launcher.name == "local"


def test_a_docker_launcher_contacts_the_engine_only_when_used(no_engine):
    launcher = DockerLauncher(image="img")  # constructing needs no engine...
    with pytest.raises(SetupError, match="no Docker engine answers"):
        launcher.client  # noqa: B018 - ...the first use does, and says what is wrong


def test_the_simulated_gpu_reaches_the_container_with_its_state_and_no_gpu(tmp_path, monkeypatch, simulated_gpu):
    scenario = simulated_gpu()
    monkeypatch.setenv("LEM_SIMULATED_GPU", str(scenario))
    options = container_options(_spec(tmp_path), "img", use_gpu=False, token_file=None)
    assert options["environment"]["LEM_SIMULATED_GPU"] == str(scenario.resolve())
    folder = str(scenario.resolve().parent)  # the scenario and its state file, at their host paths, writable
    assert _binds(options)[folder] == (folder, "rw")
    assert "device_requests" not in options and options["privileged"] is False
