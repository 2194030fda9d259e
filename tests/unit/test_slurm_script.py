"""The Slurm launcher's batch script and sbatch arguments, without a cluster: every value quoted (a hostile path
runs as a literal), options one argument each, and the config's slurm section validated with the field named."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_config, run_lem, write_yaml
from llenergymeasure.launchers.base import Timeouts
from llenergymeasure.launchers.slurm import SlurmCommands, _wait_status
from llenergymeasure.launchers.slurm_script import batch_script, sbatch_args
from pydantic import ValidationError


def test_a_hostile_exchange_path_reaches_the_runner_as_one_literal_argument(tmp_path):
    exchange = tmp_path / "a b$(touch PWNED)'\"`touch PWNED2`;x"
    exchange.mkdir()
    config = make_config(runner="slurm", slurm={"python": sys.executable})
    text = batch_script(config, "exp-1", exchange, None, sys.executable, None)
    # stand in for the runner: print the arguments it would get, one per line
    text = text.replace(shlex.quote(sys.executable) + " -m lem_runner",
                        shlex.quote(sys.executable) + " -c 'import sys; print(*sys.argv[1:], sep=chr(10))'")
    (exchange / "job.sh").write_text(text)
    out = subprocess.run(["bash", str(exchange / "job.sh")], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["--config", str(exchange / "request.json"), "--out", str(exchange)]
    assert not list(tmp_path.rglob("PWNED*"))


def test_a_docker_start_traps_term_and_removes_its_container():
    config = make_config(runner="slurm", slurm={"start": "docker", "gpus_per_job": 1})
    text = batch_script(config, "exp-1", Path("/shared/x y"), "/models", "python", "img:1")
    assert "trap 'cleanup; exit 143' TERM INT" in text
    assert "'docker' rm -f \"$name\"" in text or "docker rm -f \"$name\"" in text
    assert "-v '/shared/x y:/lem/exchange:rw'" in text and "/models:/lem/model:ro" in text
    assert "--cap-drop ALL" in text and "--read-only" in text and "--network none" in text
    assert '--gpus "device=${CUDA_VISIBLE_DEVICES}"' in text


def test_sbatch_options_are_one_argument_each_and_the_time_limit_rounds_up_to_minutes():
    config = make_config(runner="slurm", slurm={"partition": "gpu", "account": "proj", "qos": "high",
                                                "cpus_per_job": 4, "mem_per_job": "16G", "constraint": "h100",
                                                "extra_sbatch_options": ["--exclusive", "--comment=a b; rm -rf /"]})
    args = sbatch_args(config, "exp-1", Path("/x"), Timeouts(wall_s=61))
    assert args[:2] == ["sbatch", "--parsable"]
    for item in ("--partition=gpu", "--account=proj", "--qos=high", "--cpus-per-task=4", "--mem=16G",
                 "--constraint=h100", "--time=2", "--job-name=lem-exp-1", "--output=/x/runner.log", "--no-requeue",
                 "--exclusive", "--comment=a b; rm -rf /"):
        assert item in args
    assert args[-1] == "/x/job.sh" and not any(a.startswith("--gpus") for a in args)
    gpu = make_config(runner="slurm", device="cuda", slurm={"requeue": True, "time_limit": "1:00:00"})
    args = sbatch_args(gpu, "e", Path("/x"), Timeouts(wall_s=30), after="41")
    assert "--gpus=1" in args and "--requeue" in args and "--time=1:00:00" in args
    assert "--dependency=afterany:41" in args


@pytest.mark.parametrize("section, field", [
    ({"time_limit": "an hour"}, "time_limit"), ({"mem_per_job": "16GB"}, "mem_per_job"),
    ({"partition": "a b"}, "partition"), ({"extra_sbatch_options": ["--output=/tmp/x"]}, "extra_sbatch_options"),
    ({"extra_sbatch_options": ["exclusive"]}, "extra_sbatch_options"), ({"start": "singularity"}, "start"),
    ({"max_jobs_in_flight": 0}, "max_jobs_in_flight"), ({"gpus": 1}, "gpus"),
])
def test_a_bad_slurm_section_names_its_field(section, field):
    with pytest.raises(ValidationError) as info:
        make_config(runner="slurm", slurm=section)
    assert f"slurm.{field}" in str(info.value).replace("\n", ".").replace(" ", "") or field in str(info.value)


def test_the_slurm_section_changes_no_measurement_hash():
    from lem_runner.contract import measurement_config_hash

    assert measurement_config_hash(make_config()) == measurement_config_hash(
        make_config(runner="slurm", slurm={"partition": "p", "gpus_per_job": 2}))


def test_squeue_exit_codes_are_wait_statuses():
    assert _wait_status("COMPLETED", "0") == 0
    assert _wait_status("FAILED", "768") == 3  # exit 3 in the high byte
    assert _wait_status("CANCELLED", "15") == 128 + 15  # killed by SIGTERM
    assert _wait_status("PENDING", "") is None


def test_lem_run_slurm_without_slurm_is_one_line_and_exit_3(tmp_path):
    # a model folder that resolves, so the one problem is the missing scheduler (a study lists a bad model first)
    (tmp_path / "config.json").write_text('{"model_type": "llama", "vocab_size": 512}')
    config = write_yaml(tmp_path / "c.yaml", f"model: {tmp_path}\nn_prompts: 1\n")
    proc = run_lem("run", str(config), "--slurm", "-o", str(tmp_path / "out"), env={"PATH": str(tmp_path)})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Slurm" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    study = write_yaml(tmp_path / "s.yaml", f"base: {{model: {tmp_path}, runner: slurm}}\n")
    proc = run_lem("run", str(study), "-o", str(tmp_path / "out2"), env={"PATH": str(tmp_path)})
    assert proc.returncode == 3 and "Slurm" in proc.stderr


def test_commands_are_argument_lists_and_a_missing_tool_is_a_setup_error():
    from llenergymeasure.errors import SetupError

    commands = SlurmCommands()
    with pytest.raises(SetupError, match="not installed"):
        commands._run(["lem-no-such-sbatch-here", "--parsable"])
    assert commands.calls == 1


@pytest.mark.parametrize("start, needle", [
    ("process", "exec /usr/bin/python3 -m lem_runner"), ("apptainer", "exec apptainer run --containall"),
    ("enroot", "exec srun '--container-image=my image'"), ("docker", "docker run --rm --init"),
    ("podman", "podman run --rm --init"),
])
def test_every_start_method_writes_a_script_bash_accepts_with_the_image_quoted(tmp_path, start, needle):
    config = make_config(runner="slurm", slurm={"start": start, "image": "my image"})
    text = batch_script(config, "exp-1", tmp_path / "ex", "/models", "/usr/bin/python3", "my image")
    assert needle in text, text
    if start not in ("process", "enroot"):  # enroot's image is inside its quoted --container-image=
        assert "'my image'" in text
    (tmp_path / "job.sh").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sh")], capture_output=True).returncode == 0
