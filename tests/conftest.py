"""Shared factories (as plain functions and as fixtures) and the session-wide tiny model.

Test modules import the plain functions with ``from conftest import make_config`` and the fakes with
``from fakes import ...``: this directory is put on sys.path below.
"""

from __future__ import annotations

# Ryuk, testcontainers' reaper, is an image that cannot be pulled here (no registry); our fixtures clean up instead.
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from lem_runner.contract.config import ExperimentConfig  # noqa: E402
from lem_runner.contract.environment import EnvironmentInfo  # noqa: E402
from lem_runner.contract.fingerprint import measurement_config_hash  # noqa: E402
from lem_runner.contract.result import ExperimentResult  # noqa: E402
from llenergymeasure.config.loader import merge_mappings  # noqa: E402

_BASE_CONFIG = {"model": "tests/tiny-llama", "n_prompts": 4, "max_output_tokens": 8}


def make_config(**overrides) -> ExperimentConfig:
    """A valid small config; sections take nested dicts, e.g. ``make_config(pytorch={"batch_size": 4})``."""
    return ExperimentConfig.model_validate(merge_mappings(_BASE_CONFIG, overrides))


def make_environment(**overrides) -> EnvironmentInfo:
    """An environment record written by hand (no probing of this machine)."""
    fields = {"python": "3.11.9", "platform": "Linux-6.8-x86_64", "hostname": "test-host", "cpu_model": "Test CPU",
              "cpu_count": 8, "runner_version": "0.1.0", "libraries": {"torch": "2.4.0"}}
    return EnvironmentInfo.model_validate({**fields, **overrides})


def make_result(**overrides) -> ExperimentResult:
    """A valid, realistic result: 4 requests on CPU, energy null with the reason."""
    config = overrides.pop("config", None) or make_config()
    start = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    fields = {
        "experiment_id": "20250101T120000-tiny-llama-pytorch",
        "measurement_config_hash": measurement_config_hash(config),
        "config": config,
        "model_path": "/models/tiny-llama",
        "whole_run": {"n_requests": 4, "input_tokens": 40, "output_tokens": 32, "total_tokens": 72,
                      "duration_s": 2.0},
        "output_tokens": 32,
        "inference_time_s": 2.0,
        "output_tokens_per_second": 16.0,
        "total_energy_j": None,
        "energy_per_token_j": None,
        "flops": {"total": 2.0 * 1_000_000 * 72, "prefill": 2.0 * 1_000_000 * 40, "decode": 2.0 * 1_000_000 * 32,
                  "per_output_token": 2.0 * 1_000_000 * 72 / 32, "achieved_flops_per_s": 2.0 * 1_000_000 * 72 / 2.0,
                  "method": "2 x N_compute x tokens"},
        "windows": {"total": {"start_offset_s": 0.0, "duration_s": 2.0, "output_tokens": 32, "tokens_per_second": 16.0,
                              "energy_unavailable_reason": "run is on CPU: NVML covers GPUs only",
                              "flops": 2.0 * 1_000_000 * 72}},
        "ttft": {"n": 4, "mean_ms": 50.0, "p50_ms": 50.0, "p90_ms": 55.0, "p99_ms": 59.5, "min_ms": 45.0,
                 "max_ms": 60.0},
        "itl": {"n": 28, "mean_ms": 62.5, "p50_ms": 62.5, "p90_ms": 62.5, "p99_ms": 62.5, "min_ms": 62.5,
                "max_ms": 62.5},
        "energy": {"source": "none", "method": "not measured",
                   "unavailable_reason": "run is on CPU: NVML covers GPUs only"},
        "model_load_s": 1.5,
        "warmup": {"mode": "fixed", "batches": 1, "stop_reason": "fixed count of 1"},
        "environment": make_environment(),
        "start_time": start,
        "end_time": start + timedelta(seconds=4),
    }
    return ExperimentResult.model_validate({**fields, **overrides})


@pytest.fixture(name="make_config")
def _make_config_fixture():
    return make_config


@pytest.fixture(name="make_result")
def _make_result_fixture():
    return make_result


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny random Llama (real weights and tokenizer on disk), built once per session."""
    from tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


# Controller fixtures follow.

import subprocess  # noqa: E402


def run_lem(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real ``lem`` CLI in a subprocess (``python -m llenergymeasure``), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "llenergymeasure", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def refused_in_one_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """A user's mistake as lem must answer it: exit 2, one stderr line naming ``words``, no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_tiny_config(folder: Path, model: Path) -> Path:
    """``folder/tiny.yaml``: a small experiment config on ``model`` (what the ``tiny_config`` fixture writes; module
    fixtures that run it once for several tests write it with this)."""
    return write_yaml(folder / "tiny.yaml", f"""\
name: tiny
model: {model}
n_prompts: 6
max_output_tokens: 8
force_output_length: true
pytorch:
  batch_size: 3
""")


@pytest.fixture
def tiny_config(tmp_path, tiny_model_path) -> Path:
    """A small experiment config file on the tiny model."""
    return write_tiny_config(tmp_path, tiny_model_path)

from llenergymeasure.errors import SetupError  # noqa: E402
from llenergymeasure.host.docker_engine import docker_client  # noqa: E402
from llenergymeasure.images.catalog import LABEL_MANAGED  # noqa: E402

# Docker fixtures: the real engine (`make docker-up` starts one) and the real CPU image, built once per session.

@pytest.fixture(scope="session")
def engine():
    """A docker client; in CI a missing engine is a failure, not a skip."""
    try:
        return docker_client()
    except SetupError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Docker tests for real: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def vllm_cpu_image(engine):
    """llenergymeasure/vllm:<version>-cpu (`lem images build vllm --cpu`): the real vLLM CPU engine in its image."""
    from llenergymeasure.images.build import build_image

    return build_image(engine, "vllm", cpu=True)


@pytest.fixture(scope="session")
def cpu_image(engine):
    """llenergymeasure/pytorch:<version>-cpu built from images/pytorch/Dockerfile (layer cache makes rebuilds quick)."""
    from llenergymeasure.images.build import build_image

    return build_image(engine, "pytorch", cpu=True)


def _ours(container: dict, base: str) -> bool:
    """Whether a lem container's exchange folder lies under this pytest session's base temp folder: another test
    run on the same engine (a parallel worktree, a second clone) starts and removes its own containers meanwhile."""
    return any(m.get("Destination") == "/lem/exchange" and str(m.get("Source", "")).startswith(base)
               for m in container.get("Mounts") or [])


def vllm_runner(request) -> tuple[str, list[str]]:
    """(a vLLM docker test's config ``runner``, lem run's extra arguments): the image LEM_TEST_VLLM_IMAGE names
    (``docker:<image>``; a shared machine whose llenergymeasure/vllm tag other checkouts use runs on an image of its
    own), else the session's vLLM CPU image built from this tree, --isolated."""
    image = os.environ.get("LEM_TEST_VLLM_IMAGE")
    if image:
        return f"docker:{image}", []
    request.getfixturevalue("vllm_cpu_image")
    return "auto", ["--isolated"]


@pytest.fixture
def no_leftover_containers(engine, tmp_path_factory):
    """Asserts, after the test, that no lem-managed container of this test session is left (running or not)."""
    base = str(tmp_path_factory.getbasetemp().resolve())

    def ours() -> set[str]:
        # the low-level list: the high-level one inspects each container and fails on one removed meanwhile
        return {c["Id"] for c in engine.api.containers(all=True, filters={"label": LABEL_MANAGED}) if _ours(c, base)}

    before = ours()
    yield
    assert ours() - before == set(), "lem left containers behind"


@pytest.fixture
def simulated_gpu(tmp_path):
    """A factory: ``simulated_gpu(doc=None, name=...)`` writes a simulated-GPU scenario (default: the standard
    three-GPU host of tests/simgpu.py) under tmp_path and returns its path; ``sim_env(path)`` selects it."""
    from simgpu import three_gpus, write_scenario

    def make(doc: dict | None = None, name: str = "scenario.json") -> Path:
        return write_scenario(tmp_path / "simgpu", doc if doc is not None else three_gpus(), name)

    return make
