"""Adding a backend is one folder (config section, spec, implementation, server) plus its Dockerfile: a throwaway
backend in a temp package, registered through LEM_BACKENDS, shows up everywhere lem reads the registry — config
validation, `lem doctor`, `lem images list`, the dry run's estimate, a real local run, a real serving run against
the backend's own server and the result columns — with no edit to lem itself. Every call is
a fresh `lem` subprocess, so the registry is built anew with the temp package on its path."""

from __future__ import annotations

import csv
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml

#: a backend with a batch knob (``toy.lanes``) and one without (``fixed``)
PACKAGE = {
    "__init__.py": '"""A throwaway lem backend for tests."""\n',
    "config.py": '''
        from pydantic import Field

        from lem_runner.contract.section import Section


        class ToyConfig(Section):
            """Settings of the toy engine."""

            lanes: int | None = Field(None, ge=1, le=64, description="requests the toy engine runs together")
            echo_tokens: int = Field(3, ge=1, le=100, description="tokens generated per prompt")


        class FixedConfig(Section):
            """An engine without a batch knob."""

            flavour: str = "plain"
        ''',
    "spec.py": '''
        from lem_toy.config import FixedConfig, ToyConfig
        from lem_runner.contract.backends import BackendSpec, ImageSpec

        SPEC = BackendSpec(
            name="toy", config=ToyConfig, implementation="lem_toy.backend:ToyBackend",
            summary="a throwaway test engine", image=ImageSpec(extras={"gpu": "pytorch", "cpu": "pytorch"},
                                                               library="lem-toy"),
            host_modules=("lem_toy",), libraries=("pydantic",), batch_field="lanes",
            batch_meaning="requests the toy engine runs together", engine_section_fields=("lanes",),
            device_kinds=("cpu",), shm_size="2g", server_command="lem_toy.server:toy_command")
        ''',
    "server.py": '''
        import sys

        from lem_runner.backends.server import SERVED_NAME, ServerCommand


        def toy_command(cfg, model_path, port, on_cpu):
            """The toy engine's own OpenAI-compatible server (serve.py)."""
            argv = [sys.executable, "-m", "lem_toy.serve", "--port", str(port), "--name", SERVED_NAME]
            return ServerCommand("lem_toy.serve", argv, batch_size=cfg.toy.lanes)
        ''',
    "serve.py": '''
        """Streams max_tokens one-token chunks per completion, each with usage, then a usage-only chunk."""
        import argparse
        import asyncio
        import json

        from aiohttp import web


        async def completions(request):
            body = await request.json()
            n_in = len(body["prompt"]) if isinstance(body["prompt"], list) else 4
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            n = int(body.get("max_tokens") or 3)
            for i in range(1, n + 1):
                await asyncio.sleep(0.002)
                usage = {"prompt_tokens": n_in, "completion_tokens": i, "total_tokens": n_in + i}
                chunk = {"id": "t", "choices": [{"index": 0, "text": "x", "finish_reason": "length" if i == n else None}],
                         "usage": usage}
                await resp.write(f"data: {json.dumps(chunk)}\\n\\n".encode())
            final = {"id": "t", "choices": [], "usage": usage}
            await resp.write(f"data: {json.dumps(final)}\\n\\ndata: [DONE]\\n\\n".encode())
            return resp


        async def health(request):
            return web.Response(text="ok")


        async def models(request):
            return web.json_response({"object": "list", "data": [{"id": ARGS.name, "object": "model"}]})


        ap = argparse.ArgumentParser()
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("--name", default="lem")
        ARGS = ap.parse_args()
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        app.router.add_get("/health", health)
        app.router.add_get("/v1/models", models)
        web.run_app(app, host="127.0.0.1", port=ARGS.port, print=None, access_log=None)
        ''',
    "fixed_spec.py": '''
        from lem_toy.config import FixedConfig
        from lem_runner.contract.backends import BackendSpec, ImageSpec

        SPEC = BackendSpec(
            name="fixed", config=FixedConfig, implementation="lem_toy.backend:ToyBackend",
            summary="an engine that batches as it likes", image=ImageSpec(extras={"gpu": "pytorch"}, library="x"),
            host_modules=("lem_toy_absent_module",), libraries=(), batch_field=None, batch_meaning="",
            engine_section_fields=(), batch_refusal="it schedules requests itself and takes no batch size")
        ''',
    "backend.py": '''
        import time

        from lem_runner.records import GenerationRecord, LoadedModel
        from lem_runner.records import ParameterCounts


        class ToyBackend:
            """Generates echo_tokens timestamped tokens per prompt, all prompts in one call."""

            name = "toy"
            batch_size = None

            def __init__(self, config, model_path):
                self.config = config

            def load(self):
                lanes = self.config.toy.lanes or 4  # the engine's own default when unset, reported back
                return LoadedModel(device_kind="cpu", parameters=ParameterCounts(1000, 100, 100, True), libraries={},
                                   latency_method="toy clock", details={"lanes": lanes})

            def generate(self, prompts):
                out = []
                for _ in prompts:
                    start = time.perf_counter()
                    times = []
                    for _ in range(self.config.toy.echo_tokens):
                        time.sleep(0.001)
                        times.append(time.perf_counter())
                    out.append(GenerationRecord(input_tokens=2, output_tokens=len(times), start=start,
                                                token_times=times))
                return out

            def close(self):
                pass
        ''',
}


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("toy")
    package = root / "lem_toy"
    package.mkdir()
    for name, text in PACKAGE.items():
        (package / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    path = os.pathsep.join([str(root), *sys.path])
    return {"PYTHONPATH": path, "LEM_BACKENDS": "lem_toy.spec, lem_toy.fixed_spec"}


def _experiment(tmp_path: Path, model: Path, extra: str = "") -> Path:
    return write_yaml(tmp_path / "toy.yaml", f"model: {model}\nbackend: toy\ndevice: cpu\nrunner: local\n"
                                             "n_prompts: 4\nmax_output_tokens: 3\nwarmup:\n  n_batches: 0\n"
                                             "energy:\n  sampler: none\n  baseline:\n    mode: 'off'\n" + extra)


def test_a_registered_backend_is_validated_by_its_own_section(tmp_path, tiny_model_path, toy_env):
    ok = run_lem("config", "validate", str(_experiment(tmp_path, tiny_model_path, "toy:\n  lanes: 2\n")), env=toy_env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run_lem("config", "validate", str(_experiment(tmp_path, tiny_model_path, "toy:\n  lane: 2\n")), env=toy_env)
    assert bad.returncode == 2 and "toy.lane: unknown field (did you mean 'lanes'?)" in bad.stderr, bad.stderr
    on_cuda = write_yaml(tmp_path / "cuda.yaml", f"model: {tiny_model_path}\nbackend: toy\ndevice: cuda\n")
    refused = run_lem("config", "validate", str(on_cuda), env=toy_env)
    assert refused.returncode == 2 and "the toy backend runs on cpu only, not 'cuda'" in refused.stderr
    # without the registration the name is unknown, and the error lists the backends that are
    unknown = run_lem("config", "validate", str(_experiment(tmp_path, tiny_model_path)))
    assert unknown.returncode == 2
    from lem_runner.contract.backends import backend_names  # the in-tree folders, whichever this checkout has

    assert f"backend: unknown backend 'toy' (known: {', '.join(backend_names())})" in unknown.stderr, unknown.stderr


def test_a_section_for_another_backend_is_refused_in_one_line(tmp_path, tiny_model_path, toy_env):
    path = _experiment(tmp_path, tiny_model_path, "vllm:\n  max_num_seqs: 4\n")
    proc = run_lem("run", str(path), "-o", str(tmp_path / "r"), env=toy_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "vllm: settings for backend 'vllm', but the backend is 'toy'" in lines[0], lines
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def test_batch_size_on_a_backend_without_a_knob_is_refused_with_its_reason(tmp_path, tiny_model_path, toy_env):
    path = write_yaml(tmp_path / "f.yaml", f"model: {tiny_model_path}\nbackend: fixed\n")
    proc = run_lem("run", str(path), "--batch-size", "4", "-o", str(tmp_path / "r"), env=toy_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("--batch-size: the fixed backend has no batch knob (it schedules requests itself and takes no batch "
            "size)") in proc.stderr
    assert not (tmp_path / "r").exists()


def test_doctor_checks_a_registered_backends_host_modules(toy_env):
    proc = run_lem("doctor", env=toy_env, timeout=120)
    out = proc.stdout + proc.stderr
    assert "local backend toy" in out and "local backend fixed" in out, out
    line = next(ln for ln in out.splitlines() if "local backend fixed" in ln)
    assert "lem_toy_absent_module not importable here" in line, line


@pytest.mark.docker
def test_images_list_shows_a_registered_backends_image(toy_env):
    proc = run_lem("images", "list", env=toy_env)
    assert proc.returncode == 0, proc.stderr
    row = next((ln for ln in proc.stdout.splitlines() if "llenergymeasure/toy" in ln), None)
    assert row is not None and "not built: lem images build toy" in row, proc.stdout


def test_a_registered_backend_runs_and_its_batch_reaches_the_result_columns(tmp_path, tiny_model_path, toy_env):
    out = tmp_path / "results"
    proc = run_lem("run", str(_experiment(tmp_path, tiny_model_path)), "--batch-size", "3", "-o", str(out),
                   env=toy_env, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result_file,) = out.glob("*/result.json")
    result = json.loads(result_file.read_text())
    assert result["config"]["backend"] == "toy" and result["config"]["toy"]["lanes"] == 3
    assert "pytorch" not in result["config"]  # only the run's own section is recorded
    assert (result["batch_size"], result["batch_knob"]) == (3, "toy.lanes")
    assert result["whole_run"]["output_tokens"] == 4 * 3
    assert "batch 3 (toy.lanes)" in proc.stdout
    csv_path = tmp_path / "rows.csv"
    exported = run_lem("results", "export", str(out), "-o", str(csv_path), env=toy_env)
    assert exported.returncode == 0, exported.stderr
    (row,) = list(csv.DictReader(csv_path.open()))
    assert (row["backend"], row["batch_size"], row["batch_knob"]) == ("toy", "3", "toy.lanes")
    # unset, the engine's own choice is what it reports back (4), not the config's null
    default = run_lem("run", str(_experiment(tmp_path, tiny_model_path)), "-o", str(tmp_path / "d"), env=toy_env,
                      timeout=240)
    assert default.returncode == 0, default.stderr
    (d_file,) = (tmp_path / "d").glob("*/result.json")
    assert json.loads(d_file.read_text())["batch_size"] == 4


def test_a_registered_backend_is_estimated_by_the_dry_run(tmp_path, tiny_model_path, toy_env):
    proc = run_lem("run", str(_experiment(tmp_path, tiny_model_path, "toy:\n  lanes: 2\n")), "--dry-run",
                   env=toy_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "toy" in proc.stdout and "Traceback" not in proc.stderr, proc.stdout


def test_a_registered_backend_serves_through_its_own_server(tmp_path, tiny_model_path, toy_env):
    serving = ("scenario: serving\ntoy:\n  lanes: 2\nserving:\n  arrival: poisson\n  rate: 20\n"
               "  n_requests: 6\n  warmup_requests: 0\n")
    out = tmp_path / "served"
    proc = run_lem("run", str(_experiment(tmp_path, tiny_model_path, serving)), "-o", str(out), env=toy_env,
                   timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result_file,) = out.glob("*/result.json")
    result = json.loads(result_file.read_text())
    assert result["config"]["backend"] == "toy" and result["serving"]["n_ok"] == 6
    assert result["output_tokens"] == 6 * 3 and result["batch_knob"] == "toy.lanes"
