"""Mutation testing of the measurement core with mutmut 3 (``make mutate``): which small changes to the energy,
devices, GPU-state and measurement code the fast unit tests do not notice.

mutmut names a mutant by its file's path below the project root, and only understands a root, ``src/`` or
``source/`` layout; lem keeps its two packages under ``controller/`` and ``runners/``. So each group is mutated in a
stage of its own, ``.mutate/<group>/``: a copy of both packages under ``src/`` and of ``tests/``, with a
pyproject.toml whose ``[tool.mutmut]`` names the group's files and the unit tests that cover them (mutmut then runs,
for each mutant, only those of them that execute the mutated function). Groups run one after another, each capped at
its share of ``--budget-s`` (a capped group stops like Ctrl-C: what was tried is kept, the rest is "not checked").
The report (``docs/mutation.md`` by default) gives the kill rate per module and every survivor as a diff, with the
judgement from tools/mutation_judgements.py where one was made.

    python tools/mutate.py [--group energy ...] [--budget-s 1800] [--jobs 2] [--report docs/mutation.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_judgements import judge

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutate"
PACKAGES = {"lem_runner": ROOT / "runners" / "lem_runner", "llenergymeasure": ROOT / "controller" / "llenergymeasure"}

#: group -> (files to mutate, below src/; the fast unit tests that cover them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    # the energy module's own tests (the measurement loop's tests also run it, but through every counter read: too
    # slow per mutant for the 2-core budget; they are the measurement group's)
    "energy": (["src/lem_runner/energy/*"],
               ["test_energy.py", "test_energy_counter.py", "test_energy_spans.py", "test_energy_baseline_spread.py",
                "test_nvml_units.py", "test_energy_select_simulated.py", "test_simgpu.py"]),
    "devices": (["src/lem_runner/devices.py"],
                ["test_device_binding.py", "test_device_binding_edges.py", "test_runner_main.py", "test_simulated_binding.py"]),
    "gpustate": (["src/llenergymeasure/gpustate/*"],
                 ["test_gpustate.py", "test_gpustate_experiment.py", "test_gpustate_edges.py", "test_gpustate_nvml.py"]),
    "measurement": (["src/lem_runner/measurement/*"],
                    ["test_measurement.py", "test_measurement_method.py", "test_energy_counter.py",
                     "test_energy_spans.py", "test_operating_point_observed.py", "test_moe_flops.py",
                     "test_continuous_batching_timing.py", "test_measure_loop.py", "test_measurement_edges.py"]),
}

#: the breaks issue 25 names (and the other unit conversions), with the tests seen failing on each
BREAKS = [
    ("`runners/lem_runner/__main__.py`: the `os.environ.update(binding.environment)` line removed (the engine no "
     "longer bound to the measured GPU)",
     "`tests/integration/test_simulated_gpu.py::test_offline_run_on_gpu_1_measures_it_within_1_percent_and_binds_"
     "the_engine_to_it`"),
    ("`controller/llenergymeasure/gpustate/device.py`: mW→W in `power_limit_w` (`/ 100.0`), in "
     "`power_limit_range_w` (max left in mW), W→mW in `set_power_limit_w` (no `* 1000`)",
     "`tests/unit/test_gpustate_nvml.py` (6, 2 and 2 of its tests)"),
    ("`runners/lem_runner/energy/nvml.py`: mW→W of the sampled power (`/ 100.0`), of the power limit in `sample` "
     "(`* 1000.0`) and in `idle_state` (`/ 1001.0`); bytes→MiB of memory used (`2**21`)",
     "`tests/unit/test_nvml_units.py` (4, 2, 2 and 2 of its tests)"),
    ("`runners/lem_runner/energy/counter.py`: the counter's mJ→J (`delta / 100.0`)",
     "`tests/unit/test_energy_counter.py`, `tests/unit/test_nvml_units.py` (13 tests)"),
    ("`runners/lem_runner/energy/tracker.py`: the idle baseline's J-per-step→W (`* step`), and devices' powers summed "
     "per instant (offset by one)", "`tests/unit/test_energy_baseline_spread.py`"),
]

_PYPROJECT = """\
[tool.pytest.ini_options]
markers = {markers}
addopts = "-m 'not gpu and not slow and not docker and not slurm' -p no:cacheprovider"

[tool.mutmut]
source_paths = ["src"]
only_mutate = {only}
do_not_mutate = ["*/__init__.py"]
pytest_add_cli_args_test_selection = {tests}
use_git_change_detection = false
timeout_multiplier = 10.0
"""

_COLLECT = r"""
import json, sys
from mutmut.utils.file_utils import walk_mutatable_files
from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = []
for path in walk_mutatable_files():
    m = SourceFileMutationData(path=path)
    m.load()
    for key, code in m.exit_code_by_key.items():
        status = status_by_exit_code[code]
        diff = get_diff_for_mutant(key, path=m.path) if status in ("survived", "no tests", "timeout", "suspicious") else ""
        out.append({"file": str(path), "mutant": key, "status": status, "diff": diff})
json.dump(out, sys.stdout)
"""


def _markers() -> str:
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return json.dumps(cfg["tool"]["pytest"]["ini_options"]["markers"])


def stage(group: str) -> tuple[Path, list[str]]:
    """A fresh stage for ``group``; the unit tests of the group that exist (missing ones are left out, by name)."""
    only, tests = GROUPS[group]
    where = STAGE / group
    shutil.rmtree(where, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, src in PACKAGES.items():
        shutil.copytree(src, where / "src" / name, ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
    present = [f"tests/unit/{t}" for t in tests if (ROOT / "tests" / "unit" / t).exists()]
    (where / "pyproject.toml").write_text(_PYPROJECT.format(markers=_markers(), only=json.dumps(only),
                                                            tests=json.dumps(present)))
    return where, present


def run_group(group: str, budget_s: float, jobs: int, log) -> dict:
    where, tests = stage(group)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MUTANT_UNDER_TEST")}
    # subprocesses a test starts import the mutated code too; the folder must exist before Python starts, else its
    # import system caches it as missing and the tests import the editable install's code instead
    (where / "mutants" / "src").mkdir(parents=True)
    env["PYTHONPATH"] = str(where / "mutants" / "src")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    mutmut = Path(sys.executable).parent / "mutmut"
    start = time.monotonic()
    proc = subprocess.Popen([str(mutmut), "run", "--max-children", str(jobs)], cwd=where, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    capped = False
    try:
        proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        capped = True
        os.killpg(proc.pid, signal.SIGINT)  # mutmut stops like Ctrl-C and keeps what it tried
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    got = subprocess.run([sys.executable, "-c", _COLLECT], cwd=where, env=env, capture_output=True, text=True)
    mutants = json.loads(got.stdout) if got.returncode == 0 and got.stdout else []
    return {"group": group, "tests": tests, "seconds": round(time.monotonic() - start), "capped": capped,
            "returncode": proc.returncode, "mutants": mutants,
            "error": None if mutants else (got.stderr.strip().splitlines() or ["no mutants"])[-1]}


def _module(file: str) -> str:
    return file.removeprefix("src/").removesuffix(".py").replace("/", ".")


def _rate(c: Counter) -> str:
    tried = c["killed"] + c["survived"] + c["timeout"] + c["suspicious"]
    return f"{100 * c['killed'] / tried:.1f} %" if tried else "—"


def report(runs: list[dict], commit: str) -> str:
    lines = ["# Mutation testing of the measurement core", "",
             f"Written by `make mutate` (tools/mutate.py, mutmut 3) on commit `{commit}`, "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Each mutant runs only the listed unit tests that execute the "
             "mutated function. **Kill rate** = killed / (killed + survived + timeout + suspicious); a timeout counts "
             "as not killed. *No tests*: no listed test runs that function (a gap, counted apart). *Not checked*: "
             "left when the group hit its time cap.", "",
             "| module | mutants | killed | survived | no tests | timeout | not checked | kill rate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    survivors = []
    for run in runs:
        by_module: dict[str, Counter] = {}
        for m in run["mutants"]:
            by_module.setdefault(_module(m["file"]), Counter())[m["status"]] += 1
            if m["status"] != "killed":
                survivors.append(m)
        for mod, c in sorted(by_module.items()):
            lines.append(f"| `{mod}` | {sum(c.values())} | {c['killed']} | {c['survived']} | {c['no tests']} | "
                         f"{c['timeout']} | {c['not checked']} | {_rate(c)} |")
        total = sum((Counter(m["status"] for m in run["mutants"]),), Counter())
        cap = ", **capped** (not all mutants tried)" if run["capped"] else ""
        cap += f", code of `{run['commit']}`" if run.get("commit") else ""
        lines.append(f"| **{run['group']}** ({run['seconds']} s{cap}) | {sum(total.values())} | {total['killed']} | "
                     f"{total['survived']} | {total['no tests']} | {total['timeout']} | {total['not checked']} | "
                     f"**{_rate(total)}** |")
    lines += ["", "## Hand-made breaks that `make test` must catch", "",
              "Each was applied by hand to the code and the tests named were seen failing (2026-12-07); the mutants "
              "above cover the same lines.", "",
              "| break | tests that fail |", "|---|---|"]
    lines += [f"| {what} | {tests} |" for what, tests in BREAKS]
    lines += ["", "Tests per group:", ""]
    lines += [f"- {r['group']}: " + ", ".join(f"`{Path(t).name}`" for t in r["tests"])
              + (f" — error: {r['error']}" if r["error"] else "") for r in runs]
    judged = [(m, judge(m)) for m in survivors if m["status"] in ("survived", "timeout", "suspicious")]
    lines += ["", "## Survivors", "",
              "Each with the judgement made by hand (tools/mutation_judgements.py); *unjudged* ones are open. "
              "Survivors in unit conversions or device binding are never judged harmless: a test kills them.", ""]
    for m, why in judged:
        changed = [ln for ln in m["diff"].splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
        lines += [f"- `{m['mutant']}` ({m['status']}): {why or '*unjudged*'}", "  ```diff",
                  *(f"  {ln}" for ln in changed), "  ```"]
    no_tests = [m for m in survivors if m["status"] == "no tests"]
    if no_tests:
        lines += ["## Functions no listed unit test runs", ""]
        funcs = Counter(m["mutant"].partition("__mutmut_")[0] for m in no_tests)
        lines += [f"- `{f}` ({n} mutants)" for f, n in sorted(funcs.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", choices=sorted(GROUPS), help="groups to mutate (default: all)")
    ap.add_argument("--budget-s", type=float, default=1800.0, help="wall-clock cap for all groups together")
    ap.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    ap.add_argument("--report", type=Path, default=ROOT / "docs" / "mutation.md")
    ap.add_argument("--json", type=Path, default=STAGE / "results.json", help="every mutant's status, as JSON")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from the last run's --json (after judging survivors anew)")
    ap.add_argument("--commit", help="--report-only: the commit the run was staged from, when its JSON lacks it")
    args = ap.parse_args(argv)
    groups = args.group or list(GROUPS)
    if args.report_only:
        runs = json.loads(args.json.read_text())
        args.report.write_text(report(runs, args.commit or (runs[0].get("commit", "unknown") if runs else "unknown")))
        print(f"mutate: report written to {args.report}")
        return 0
    STAGE.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    deadline = time.monotonic() + args.budget_s
    runs = []
    log_name = f"mutmut-{'-'.join(args.group)}.log" if args.group else "mutmut.log"
    with open(STAGE / log_name, "w") as log:
        for i, group in enumerate(groups):
            share = (deadline - time.monotonic()) / (len(groups) - i)
            print(f"mutate: {group} (cap {share:.0f} s; log .mutate/{log_name})", flush=True)
            log.write(f"\n===== {group}\n")
            log.flush()
            runs.append({**run_group(group, max(share, 30.0), args.jobs, log), "commit": commit})
            r = runs[-1]
            c = Counter(m["status"] for m in r["mutants"])
            print(f"mutate: {group}: {dict(c)} in {r['seconds']} s" + (" (capped)" if r["capped"] else ""),
                  flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    if args.group and args.json.exists():  # a rerun of some groups: keep the others' last results
        fresh = {r["group"] for r in runs}
        runs = [r for r in json.loads(args.json.read_text()) if r["group"] not in fresh] + runs
        runs.sort(key=lambda r: list(GROUPS).index(r["group"]))
    args.json.write_text(json.dumps(runs, indent=1))
    args.report.write_text(report(runs, commit))
    print(f"mutate: report written to {args.report}")
    return 0 if all(r["mutants"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
