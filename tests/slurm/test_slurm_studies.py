"""Studies as Slurm jobs on a real cluster (`make slurm-up`): concurrency, faults with their Slurm state, a killed
controller resumed, --detach then --resume, a docker-runtime job cancelled, fake GPU GRES. Every job is real: the
tiny model measured by the real runner, or a stand-in script where a fault needs one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from llenergymeasure.study.manifest import load_manifest
from slurmtools import sacct_rows, script, slurm_cluster, wait_for  # noqa: F401 (slurm_cluster: a fixture, used by pytestmark)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

SLURM = "{cpus_per_job: 1, poll_interval_s: 0.3, max_jobs_in_flight: 4}"


def study_yaml(path: Path, model: Path, name: str, body: str, slurm: str = SLURM, n_cycles: int = 1) -> Path:
    return write_yaml(path, f"""\
name: {name}
n_cycles: {n_cycles}
max_consecutive_failures: 0
base:
  model: {model}
  device: cpu
  n_prompts: 2
  max_output_tokens: 4
  force_output_length: true
  energy: {{sample_hz: 0, baseline: {{mode: "off"}}}}
  runner: slurm
  slurm: {slurm}
{body}""")


def study_dir(output: Path) -> Path:
    dirs = [p for p in output.iterdir() if (p / "manifest.json").is_file()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def manifest_of(output: Path):
    try:
        return load_manifest(study_dir(output))
    except (AssertionError, FileNotFoundError, Exception):
        return None


def lem_background(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llenergymeasure", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def max_overlap(rows: dict[str, list[str]]) -> int:
    """The most jobs running at one instant, from sacct's Start/End."""
    from datetime import datetime

    events = []
    for row in rows.values():
        start, end = datetime.fromisoformat(row[3]), datetime.fromisoformat(row[4])
        events += [(start, 1), (end, -1)]
    level = best = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        level += step
        best = max(best, level)
    return best


def test_a_2x2_study_of_2_cycles_runs_as_concurrent_jobs_with_the_local_token_counts(
        tiny_model_path, tmp_path):
    from llenergymeasure.experiment import execute_experiment
    from llenergymeasure.launchers.local import LocalLauncher

    path = study_yaml(tmp_path / "study.yaml", tiny_model_path, "s22", """\
sweep:
  n_prompts: [2, 3]
  max_output_tokens: [3, 5]
""", n_cycles=2)
    out = tmp_path / "results"
    proc = run_lem("run", str(path), "-o", str(out), timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = load_manifest(study_dir(out))
    assert [e.status for e in manifest.entries] == ["done"] * 8
    assert all(e.slurm_state == "COMPLETED" and e.slurm_exit_code == 0 for e in manifest.entries)
    ids = [e.slurm_job_id for e in manifest.entries]
    assert len(set(ids)) == 8 and all(ids)
    assert max_overlap(sacct_rows(ids)) >= 2, "the study's jobs ran one at a time"

    tokens = {}
    for e in manifest.entries:
        result = json.loads((study_dir(out) / e.result_path / "result.json").read_text())
        assert result["environment"]["allocation"]["job_id"] == e.slurm_job_id
        tokens.setdefault(e.point, set()).add((result["whole_run"]["input_tokens"], result["output_tokens"]))
    assert all(len(v) == 1 for v in tokens.values()), tokens  # both cycles of a point agree
    from llenergymeasure.study import expand_study, load_study

    expansion = expand_study(load_study(path))
    for i, point in enumerate(expansion.points):  # the same point run locally gives the same token counts
        if i not in (0, len(expansion.points) - 1):
            continue  # the two corners cover every value of both axes; a local run costs as much as a job
        local = point.config.model_copy(update={"runner": "local"})
        result, _ = execute_experiment(local, output=tmp_path / "local", launcher=LocalLauncher())
        assert tokens[i] == {(result.whole_run.input_tokens, result.output_tokens)}
        assert result.output_tokens == local.n_prompts * local.max_output_tokens


def test_a_failing_a_timed_out_and_a_cancelled_job_are_failed_runs_with_their_slurm_state(
        tiny_model_path, tmp_path):
    exits = script(tmp_path / "exit3", "echo 'runner stand-in: exiting 3' >&2; exit 3")
    sleeps = script(tmp_path / "sleeps", "exec sleep 600")
    path = study_yaml(tmp_path / "faults.yaml", tiny_model_path, "faults", f"""\
experiments:
  - {{name: exits, max_output_tokens: 3, slurm: {{python: "{exits}", cpus_per_job: 1, poll_interval_s: 0.3}}}}
  - {{name: overruns, max_output_tokens: 4, slurm: {{python: "{sleeps}", time_limit: "1", cpus_per_job: 1,
                                                    poll_interval_s: 0.3}}}}
  - {{name: cancelled, max_output_tokens: 5, slurm: {{python: "{sleeps}", cpus_per_job: 1, poll_interval_s: 0.3}}}}
""")
    out = tmp_path / "results"
    out.mkdir()
    lem = lem_background("run", str(path), "-o", str(out), cwd=tmp_path)
    try:
        def cancelled_running():
            m = manifest_of(out)
            entry = m and next((e for e in m.entries if e.name.startswith("cancelled")), None)
            return entry.slurm_job_id if entry and entry.slurm_state == "RUNNING" else None

        job = wait_for(cancelled_running, 120, "the 'cancelled' job to run")
        subprocess.run(["scancel", job], check=True, timeout=20)
        text, _ = lem.communicate(timeout=200)  # the time limit is 1 minute; Slurm checks it every 30 s
    finally:
        if lem.poll() is None:
            lem.kill()
    assert lem.returncode == 1, text
    manifest = load_manifest(study_dir(out))
    by_name = {e.name.split("-c")[0]: e for e in manifest.entries}
    assert not manifest.skipped
    expected = {"exits": ("FAILED", "crashed", 3), "overruns": ("TIMEOUT", "timeout", None),
                "cancelled": ("CANCELLED", "cancelled", None)}
    for name, (state, reason, code) in expected.items():
        entry = by_name[name]
        assert entry.status == "failed" and entry.slurm_state == state and entry.reason == reason, (name, entry)
        assert state in entry.error or name == "exits", entry.error
        if code is not None:
            assert entry.slurm_exit_code == code
        assert (study_dir(out) / entry.result_path / "runner.log").is_file()  # the log is kept
    assert "exited with code 3" in by_name["exits"].error
    log = (study_dir(out) / by_name["exits"].result_path / "runner.log").read_text()
    assert "runner stand-in: exiting 3" in log


def _submitted(out: Path, n: int):
    m = manifest_of(out)
    return m if m and sum(bool(e.slurm_job_id) for e in m.entries) >= n else None


def test_lem_sigkilled_mid_study_resumes_onto_its_jobs_and_runs_each_once(tiny_model_path, tmp_path):
    path = study_yaml(tmp_path / "kill.yaml", tiny_model_path, "killed", """\
sweep:
  max_output_tokens: [3, 4, 5]
""", slurm="{cpus_per_job: 1, poll_interval_s: 0.3, max_jobs_in_flight: 2}")
    out = tmp_path / "results"
    out.mkdir()
    lem = lem_background("run", str(path), "-o", str(out), cwd=tmp_path)
    try:
        before = wait_for(lambda: _submitted(out, 2), 120, "two jobs submitted")
    finally:
        os.kill(lem.pid, signal.SIGKILL)
        lem.wait()
    submitted = {e.run: e.slurm_job_id for e in before.entries if e.slurm_job_id}
    proc = run_lem("run", str(path), "-o", str(out), "--resume", timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = load_manifest(study_dir(out))
    assert [e.status for e in manifest.entries] == ["done"] * 3
    for run, job in submitted.items():  # re-attached, not submitted again
        assert next(e for e in manifest.entries if e.run == run).slurm_job_id == job
    run_dirs = [p for p in study_dir(out).iterdir() if p.is_dir()]
    assert len(run_dirs) == 3, run_dirs
    names = sacct_rows([e.slurm_job_id for e in manifest.entries])
    all_jobs = subprocess.run(["squeue", "--states=all", "-h", "-O", "Name:|"], capture_output=True, text=True).stdout
    for e in manifest.entries:  # exactly one job per run folder, ever
        assert all_jobs.split().count(f"lem-{e.result_path}|") == 1
    assert len(names) == 3


def test_detach_submits_and_returns_then_resume_collects(tiny_model_path, tmp_path):
    path = study_yaml(tmp_path / "detach.yaml", tiny_model_path, "detached", """\
sweep:
  max_output_tokens: [3, 4]
""", slurm="{cpus_per_job: 1, poll_interval_s: 0.3, max_jobs_in_flight: 1}")
    out = tmp_path / "results"
    started = time.monotonic()
    proc = run_lem("run", str(path), "-o", str(out), "--detach", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "detached" in proc.stdout and "--resume" in proc.stdout
    manifest = load_manifest(study_dir(out))
    assert manifest.status == "detached"
    assert all(e.status == "running" and e.slurm_job_id for e in manifest.entries)
    ids = [e.slurm_job_id for e in manifest.entries]
    # max_jobs_in_flight 1: Slurm itself throttles, the second job waits on the first
    dep = subprocess.run(["scontrol", "show", "job", ids[1]], capture_output=True, text=True).stdout
    assert f"Dependency=afterany:{ids[0]}" in dep, dep
    assert time.monotonic() - started < 60
    proc = run_lem("run", str(path), "-o", str(out), "--resume", timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = load_manifest(study_dir(out))
    assert [e.status for e in manifest.entries] == ["done"] * 2
    assert [e.slurm_job_id for e in manifest.entries] == ids  # collected, never resubmitted


def test_a_job_asking_for_a_gpu_sees_its_allocation(tiny_model_path, tmp_path):
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout
    if "gpu" not in gres:
        if os.environ.get("CI"):
            pytest.fail(f"CI's cluster must have (fake) GPU GRES (make slurm-up): sinfo says {gres!r}")
        pytest.skip(f"this cluster has no GPU GRES ({gres.strip()!r})")
    config = write_yaml(tmp_path / "gpu.yaml", f"""\
name: gres
model: {tiny_model_path}
device: cpu
n_prompts: 2
max_output_tokens: 3
energy: {{sample_hz: 0, baseline: {{mode: "off"}}}}
slurm: {{gpus_per_job: 1, cpus_per_job: 1, poll_interval_s: 0.3}}
""")
    proc = run_lem("run", str(config), "--slurm", "-o", str(tmp_path / "out"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result_file,) = (tmp_path / "out").glob("gres-*/result.json")
    alloc = json.loads(result_file.read_text())["environment"]["allocation"]
    assert alloc["cuda_visible_devices"] == "0" and alloc["gpus"] == "0", alloc
    assert alloc["node"] and alloc["job_id"]
    script_text = (result_file.parent / "job.sh").read_text()
    assert "lem_runner" in script_text


@pytest.mark.docker
def test_a_docker_runtime_job_cancelled_leaves_no_container(cpu_image, tiny_model_path, tmp_path):
    from conftest import make_config
    from llenergymeasure.experiment import prepare_run
    from llenergymeasure.launchers.slurm import SlurmLauncher
    from llenergymeasure.results import FileResultsRepository

    config = make_config(model=str(tiny_model_path), device="cpu", name="dockerjob", runner="slurm",
                         n_prompts=64, max_output_tokens=64, energy={"sample_hz": 0, "baseline": {"mode": "off"}},
                         slurm={"start": "docker", "image": cpu_image.tag,
                                "cpus_per_job": 1})
    launcher = SlurmLauncher()
    spec = prepare_run(config, FileResultsRepository(tmp_path / "out"), None)
    job = launcher.submit(spec)
    label = f"label=lem.experiment={spec.request.experiment_id}"

    def containers(all_: bool = False) -> list[str]:
        cmd = ["docker", "ps", "-q", "--filter", label] + (["-a"] if all_ else [])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.split()

    try:
        wait_for(containers, 120, "the job's container to start", interval=0.5)
        subprocess.run(["scancel", job.job_id], check=True, timeout=20)
        status = wait_for(lambda: (s := launcher.poll([job]).get(job.job_id)) and s.finished and s, 60,
                          "the job to end")
        assert status.state == "CANCELLED"
        wait_for(lambda: not containers(all_=True), 30, "the container to be removed")
    finally:
        for cid in containers(all_=True):
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=30)


def test_doctor_reports_slurm_its_partitions_and_gpu_gres():
    proc = run_lem("doctor", env={"COLUMNS": "250"})
    line = next(line for line in proc.stdout.splitlines() if "│ Slurm " in line)
    assert " ok " in line and "debug" in line, proc.stdout
    gres = next(line for line in proc.stdout.splitlines() if "Slurm GPU GRES" in line)
    assert "gpu" in gres


def test_ctrl_c_cancels_lems_jobs_and_leaves_the_study_resumable(tiny_model_path, tmp_path):
    sleeps = script(tmp_path / "sleeps", "exec sleep 600")
    path = study_yaml(tmp_path / "ctrlc.yaml", tiny_model_path, "ctrlc", """\
sweep:
  max_output_tokens: [3, 4]
""", slurm=f'{{python: "{sleeps}", cpus_per_job: 1, poll_interval_s: 0.3}}')
    out = tmp_path / "results"
    out.mkdir()
    lem = lem_background("run", str(path), "-o", str(out), cwd=tmp_path)
    try:
        def both_running():
            m = manifest_of(out)
            return m if m and all(e.slurm_state == "RUNNING" for e in m.entries) else None

        before = wait_for(both_running, 120, "both jobs to run")
        lem.send_signal(signal.SIGINT)
        text, _ = lem.communicate(timeout=60)
    finally:
        if lem.poll() is None:
            lem.kill()
    assert lem.returncode == 130, text
    ids = [e.slurm_job_id for e in before.entries]
    states = subprocess.run(["squeue", "--states=all", "-h", "-j", ",".join(ids), "-O", "State:|"],
                            capture_output=True, text=True).stdout.split()
    assert states == ["CANCELLED|", "CANCELLED|"], states
    manifest = load_manifest(study_dir(out))
    assert manifest.status == "interrupted" and [e.status for e in manifest.entries] == ["pending"] * 2
    assert all(e.slurm_job_id is None for e in manifest.entries)


def test_resume_plans_again_a_run_whose_job_the_scheduler_lost(tiny_model_path, tmp_path):
    flag = tmp_path / "hold"
    flag.touch()
    python = script(tmp_path / "python", f'[ -e "{flag}" ] && exec sleep 600\nexec "{sys.executable}" "$@"')
    path = study_yaml(tmp_path / "lost.yaml", tiny_model_path, "lost", "sweep: {max_output_tokens: [3]}\n",
                      slurm=f'{{python: "{python}", cpus_per_job: 1, poll_interval_s: 0.3}}')
    out = tmp_path / "results"
    proc = run_lem("run", str(path), "-o", str(out), "--detach", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sdir = study_dir(out)
    manifest = load_manifest(sdir)
    (entry,) = manifest.entries
    subprocess.run(["scancel", entry.slurm_job_id], check=True, timeout=20)
    # the scheduler forgets the job (a purged controller, another cluster): its id now names nothing
    job_file = sdir / entry.result_path / "slurm.json"
    job = json.loads(job_file.read_text())
    job_file.write_text(json.dumps({**job, "job_id": "999999", "submitted": "2000-01-01T00:00:00+00:00"}))
    raw = json.loads((sdir / "manifest.json").read_text())
    raw["entries"][0]["slurm_job_id"] = "999999"
    (sdir / "manifest.json").write_text(json.dumps(raw))
    flag.unlink()
    proc = run_lem("run", str(path), "-o", str(out), "--resume", timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (entry2,) = load_manifest(sdir).entries
    assert entry2.status == "done" and entry2.slurm_job_id not in ("999999", entry.slurm_job_id)
    assert entry2.attempts == 2 and entry2.result_path != entry.result_path
    assert [p.name for p in sdir.iterdir() if p.is_dir()] == [entry2.result_path]  # the lost run's folder is gone
