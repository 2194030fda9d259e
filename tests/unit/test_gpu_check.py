"""`make gpu-check` and BENCHMARKS.md's GPU rows, checked where no GPU is: the configs the check runs pass the real
`lem config validate`, its power-limit rows read the contract's fields, and a GPU row names the commit it was
measured on and says "stale since" the first later commit that changed the code it describes (a real git history)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_lem
from lem_runner.contract.operating_point import GpuSetting, ObservedClocks, OperatingPoint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check  # noqa: E402
import provenance  # noqa: E402


def test_the_configs_gpu_check_runs_pass_lem_config_validate(tmp_path, tiny_model_path, simulated_gpu):
    from simgpu import sim_env

    gpus = sim_env(simulated_gpu())  # the NVML sampler and the power limits need GPUs NVML sees: simulated ones
    files = {"sweep": gpu_check.power_sweep_study(tiny_model_path, gpu_check.sweep_points(200.0, 700.0)),
             **gpu_check.vllm_configs(tiny_model_path)}
    said = {}
    for name, cfg in files.items():
        text = json.dumps(cfg)
        if '"device": "cuda"' in text:  # for a GPU machine: here, without CUDA, validate refuses exactly that field
            path = tmp_path / f"{name}-cuda.yaml"
            path.write_text(text)
            refused = run_lem("config", "validate", str(path), timeout=120, env=gpus)
            assert refused.returncode == 2 and "device: 'cuda' needs an NVIDIA GPU" in refused.stderr, refused.stderr
            text = text.replace('"device": "cuda"', '"device": "auto"')
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        out = run_lem("config", "validate", str(path), timeout=120, env=gpus)
        assert out.returncode == 0, f"{name}: {out.stdout}{out.stderr}"
        said[name] = out.stdout
    assert "2 point(s)" in said["sweep"]


def test_sweep_points_are_a_binding_limit_and_the_maximum():
    assert gpu_check.sweep_points(200.0, 700.0) == [350, 700]  # H100 SXM: half of 700 W binds under load
    assert gpu_check.sweep_points(400.0, 700.0) == [400, 700]  # never below the device's minimum
    assert gpu_check.sweep_points(700.0, 700.0) == [700]


def test_sweep_rows_read_applied_and_observed_limits_by_the_contracts_names():
    op = OperatingPoint(settings=[GpuSetting(gpu="0", requested_power_limit_w=350.0, applied_power_limit_w=350.0,
                                             previous_power_limit_w=700.0)],
                        observed={"0": ObservedClocks(n_samples=40, power_limit_min_w=350.0, power_limit_max_w=350.0)})
    result = {"config": {"gpu": {"power_limit_w": 350.0}}, "operating_point": op.model_dump(mode="json"),
              "energy_per_token_j": 0.25, "output_tokens_per_second": 900.0, "quality_flags": []}
    (row,) = gpu_check.sweep_rows([result])
    assert row == {"power_limit_w": 350.0, "applied_w": [350.0], "observed_max_w": [350.0], "j_per_token": 0.25,
                   "tokens_per_second": 900.0, "quality_flags": []}


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin", "HOME": str(repo)}
    if date:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def history(tmp_path) -> dict:
    """A repo whose GPU code changes once after the measured commit, then only docs change."""
    repo = tmp_path / "repo"
    energy = repo / "runners" / "lem_runner" / "energy"
    energy.mkdir(parents=True)
    _git(repo, "init", "-q")
    (energy / "nvml.py").write_text("W_PER_MW = 1e-3\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "measured", date="2026-11-20T10:00:00Z")
    measured = _git(repo, "rev-parse", "HEAD")
    digest = provenance.code_digest(repo)
    (energy / "nvml.py").write_text("W_PER_MW = 0.001\n")
    _git(repo, "commit", "-qam", "changes the energy code", date="2026-11-26T10:00:00Z")
    changed = _git(repo, "rev-parse", "--short", "HEAD")
    (repo / "README.md").write_text("docs\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "docs only", date="2026-11-27T10:00:00Z")
    return {"repo": repo, "measured": measured, "digest": digest, "changed": changed}


def test_a_row_measured_on_older_code_names_its_commit_and_says_stale_since(history):
    repo = history["repo"]
    # a result from the GPU machine (no .git there): only the digest of the code it ran
    note = provenance.describe({"provenance": {"code_digest": history["digest"], "commit": None}}, repo)
    assert note.startswith(f"measured on `{history['measured'][:7]}` (2026-11-20, by its code digest)")
    assert f"**stale since `{history['changed']}` (2026-11-26)**: 1 later commit(s)" in note
    # a commit recorded directly says the same; a result older than provenance is placed by its date
    assert provenance.describe({"provenance": {"commit": history["measured"]}}, repo).startswith(
        f"measured on `{history['measured'][:7]}` (2026-11-20); **stale since `{history['changed']}`")
    dated = provenance.describe({"date": "2026-11-21T09:00:00"}, repo)
    assert "inferred from the run's date" in dated and f"stale since `{history['changed']}`" in dated


def test_a_row_measured_on_the_current_code_is_not_stale(history):
    repo = history["repo"]
    note = provenance.describe({"provenance": {"code_digest": provenance.code_digest(repo)}}, repo)
    assert note.startswith(f"measured on `{history['changed']}` (2026-11-26, by its code digest)")
    assert "stale" not in note
    unknown = provenance.describe({"provenance": {"code_digest": "0" * 16}}, repo)
    assert "unknown code" in unknown and "treat as stale" in unknown


def test_the_digest_is_gits_own_blob_ids(history):
    """Computed without git on the GPU machine, it must equal the one read from a commit's tree."""
    repo = history["repo"]
    assert provenance.code_digest(repo) == provenance.digest_at("HEAD", repo)
    assert provenance.digest_at(history["measured"], repo) == history["digest"]
