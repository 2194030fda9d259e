"""Bad input, property-based: whatever a config file, a study file or a flag holds, `lem run` refuses it with exit 2
and exactly one readable line naming the field or file, never a traceback, and writes nothing anywhere.

Hypothesis generates the inputs: fuzzed YAML text and raw bytes (non-UTF-8 included), wrong types and out-of-range
values for every constrained field (found by walking the config model), unknown keys, contradictory backend
options, broken study files and sweeps, huge values, output paths that go up with '..' or through symbolic links,
and experiment names with path separators or shell metacharacters. The CLI is driven in-process (``main(argv)``,
output captured) for speed; a handful of the same inputs also go through a real ``python -m llenergymeasure``.

Each example runs in a fresh sandbox (a current folder, a config folder, a folder outside both); the whole sandbox
is listed before and after, and nothing may appear anywhere in it — the refused run writes no results directory,
no cache entry, nothing outside. Every base config names a model folder that does not exist, so an input that was
wrongly accepted still cannot start a run (it would fail on 'model' instead, and the field check catches that).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import typing
from collections import Counter
from pathlib import Path

import annotated_types
import pytest
import yaml
from conftest import run_lem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lem_runner.contract import ExperimentConfig, backend_names
from llenergymeasure.cli.app import main
from pydantic import BaseModel

COUNTS: Counter = Counter()
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
MISSING_MODEL = "/nonexistent/lem-bad-input/model"


@pytest.fixture(scope="module", autouse=True)
def sandbox_root(tmp_path_factory):
    """Each example gets a folder under here; lem's cache and the HF home point inside the sandbox too."""
    root = tmp_path_factory.mktemp("bad-input")
    saved = {k: os.environ.get(k) for k in ("LEM_CACHE_DIR", "HF_HOME", "COLUMNS")}
    os.environ.update(LEM_CACHE_DIR=str(root / "cache"), HF_HOME=str(root / "hf"), COLUMNS="200")
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    print(f"\nbad inputs tried: {sum(COUNTS.values())} {dict(COUNTS)}")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} | {str(p) for p in [root] if p.exists()}


class Box:
    """A fresh sandbox: ``cwd`` (where lem runs; -o results lands here), ``cfg`` (config files), ``outside``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(tempfile.mkdtemp(dir=root))
        self.cwd = self.root / "home" / "user" / "work"
        self.cfg = self.root / "configs"
        self.outside = self.root / "outside"
        for d in (self.cwd, self.cfg, self.outside):
            d.mkdir(parents=True)
        (self.outside / "keep.txt").write_text("untouched")

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.cfg / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path


def refuse(root: Path, kind: str, make_args, setup=None) -> str:
    """Run `lem run` in a fresh sandbox on the args ``make_args(box)`` builds; assert the refusal contract; return
    the one line it printed."""
    COUNTS[kind] += 1
    box = Box(root)
    if setup is not None:
        setup(box)
    args = make_args(box)
    before = _tree(box.root)
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(box.cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["run", *args])
    finally:
        os.chdir(old)
    text = out.getvalue() + err.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 2, f"{args!r} -> exit {code}: {text[:2000]}"
    assert "Traceback" not in text
    assert len(lines) == 1, f"{args!r} printed {len(lines)} lines: {text[:2000]}"
    assert lines[0].startswith("error: ") and len(lines[0]) <= 1100
    assert _tree(box.root) == before, f"{args!r} wrote {_tree(box.root) - before}"
    assert not (root / "cache").exists() or not any((root / "cache").iterdir())
    return lines[0]


BASE = {"model": MISSING_MODEL, "n_prompts": 2, "max_output_tokens": 4}


def _dump(data, fmt: str) -> str:
    return json.dumps(data) if fmt == "json" else yaml.safe_dump(data, sort_keys=False)


# --- fuzzed text and bytes -----------------------------------------------------------------------------------------

YAML_NOISE = st.text(alphabet=st.sampled_from(list("abz09 :-[]{},'\"&*!|>%@`#?\t\n\\") + ["\x00", "é", "\u2028"]),
                     min_size=1, max_size=60)


@SETTINGS
@given(noise=YAML_NOISE)
def test_fuzzed_yaml_is_refused_in_one_line(sandbox_root, noise):
    text = f"model: {MISSING_MODEL}\nn_prompts: 2\n" + noise
    refuse(sandbox_root, "fuzzed yaml", lambda b: [str(b.write("c.yaml", text))])


@SETTINGS
@given(junk=st.binary(min_size=1, max_size=80), where=st.integers(0, 40), bad=st.booleans())
def test_fuzzed_bytes_and_non_utf8_are_refused(sandbox_root, junk, where, bad):
    head = f"model: {MISSING_MODEL}\n".encode()
    tail = b"n_prompts: 2\nmax_output_tokens: 4\n"
    junk = (b"\xff\xfe" + junk) if bad else junk  # half the examples are surely not UTF-8
    where = min(where, len(tail))
    line = refuse(sandbox_root, "fuzzed bytes", lambda b: [str(b.write("c.yaml", head + tail[:where] + junk + tail[where:]))])
    if bad:
        assert "not UTF-8" in line


@SETTINGS
@given(cut=st.integers(1, 10_000))
def test_truncated_config_files_are_refused_naming_the_file(sandbox_root, cut):
    full = json.dumps({**BASE, "pytorch": {"batch_size": 2}, "warmup": {"n_batches": 0}})
    text = full[: 1 + cut % (len(full) - 1)]  # a proper, non-empty prefix of a JSON object
    line = refuse(sandbox_root, "truncated json", lambda b: [str(b.write("c.json", text))])
    assert "c.json" in line


# --- every constrained field: wrong types, out-of-range and huge values --------------------------------------------


def _leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, typing.Any, list]]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        members = [a for a in typing.get_args(ann) if a is not type(None)]  # a backend section: Section | None
        if name in backend_names() and len(members) == 1:
            ann = members[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaves(ann, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", ann, list(field.metadata)))
    return out


LEAVES = [leaf for leaf in _leaves(ExperimentConfig) if leaf[0] != "model"]
NOT_A_NUMBER = st.text(alphabet="xyz_-", min_size=1, max_size=10).map(lambda s: f"x{s}")
CONTAINERS = st.one_of(st.lists(st.integers(), min_size=1, max_size=3), st.dictionaries(st.text("ab", min_size=1), st.integers(), min_size=1))


def _kinds(ann) -> set:
    args = typing.get_args(ann)
    if typing.get_origin(ann) is typing.Literal:
        return {"literal"}
    if args and typing.get_origin(ann) not in (list, dict):  # a mapping's own args are its keys' and values' types
        return set().union(*(_kinds(a) for a in args if a is not type(None)))
    return {ann}


def _wrong(ann) -> st.SearchStrategy:
    kinds = _kinds(ann)
    if "literal" in kinds:
        allowed = set(typing.get_args(ann)) | {v for a in typing.get_args(ann) for v in typing.get_args(a)}
        return st.one_of(NOT_A_NUMBER.filter(lambda s: s not in allowed), CONTAINERS)
    if kinds & {int, float}:
        wrong = [NOT_A_NUMBER, CONTAINERS]
        if float not in kinds:
            wrong.append(st.floats(0.1, 0.9).map(lambda f: 3 + f))  # not a whole number
        return st.one_of(*wrong)
    if bool in kinds:
        return st.one_of(NOT_A_NUMBER, CONTAINERS, st.integers(2, 10**6))
    if str in kinds:
        return CONTAINERS
    if typing.get_origin(ann) is list:
        return st.one_of(NOT_A_NUMBER, st.lists(NOT_A_NUMBER, min_size=1, max_size=2))
    if any(typing.get_origin(k) is dict for k in kinds):  # a pass-through mapping: any mapping is the right type
        return st.one_of(NOT_A_NUMBER, st.lists(st.integers(), min_size=1, max_size=3))
    return CONTAINERS


def _out_of_range(metadata: list) -> st.SearchStrategy | None:
    choices = []
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            choices += [st.just(m.ge - 1), st.just(-(10**30))]
        elif isinstance(m, annotated_types.Gt):
            choices += [st.just(m.gt), st.just(m.gt - 1)]
        elif isinstance(m, annotated_types.Le):
            choices += [st.just(m.le + 1), st.just(10**30), st.just(10**400)]
        elif isinstance(m, annotated_types.Lt):
            choices += [st.just(m.lt)]
    return st.one_of(*choices) if choices else None


BAD_FIELDS = st.one_of(
    *[st.tuples(st.just(path), _wrong(ann), st.just("wrong type")) for path, ann, _ in LEAVES],
    *[st.tuples(st.just(path), s, st.just("out of range")) for path, _, meta in LEAVES
      if (s := _out_of_range(meta)) is not None],
)


def _nest(path: str, value) -> dict:
    """``{a: {b: value}}`` for ``a.b``; a backend section's field comes with ``backend:`` naming it (another
    backend's section is refused before its fields are read)."""
    *parents, leaf = path.split(".")
    node = out = {"backend": parents[0]} if parents and parents[0] in backend_names() else {}
    for p in parents:
        node[p] = {}
        node = node[p]
    node[leaf] = value
    return out


@SETTINGS
@given(bad=BAD_FIELDS, fmt=st.sampled_from(["json", "yaml"]))
def test_wrong_types_and_out_of_range_values_name_the_field(sandbox_root, bad, fmt):
    path, value, kind = bad
    data = {**BASE, **_nest(path, value)}
    line = refuse(sandbox_root, kind, lambda b: [str(b.write(f"c.{fmt}", _dump(data, fmt)))])
    # one problem: 'c.json: path: ...'; a section with several wrong fields lists each: 'c.json: N problems: path.x: ...'
    assert re.search(rf"c\.{fmt}: (\d+ problems: )?{re.escape(path)}[.:]", line), line


@SETTINGS
@given(key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True), section=st.sampled_from(
    ["", "pytorch", "vllm", "tensorrt", "decoding", "warmup", "energy", "energy.baseline", "window", "prompts"]))
def test_unknown_keys_are_named(sandbox_root, key, section):
    known = {p for p, _, _ in _leaves(ExperimentConfig)} | {*backend_names(), "decoding", "warmup",
                                                             "energy", "window", "prompts", "energy.baseline"}
    path = f"{section}.{key}" if section else key
    if path in known or key in ("base", "sweep", "experiments"):
        return
    line = refuse(sandbox_root, "unknown key", lambda b: [str(b.write("c.yaml", _dump({**BASE, **_nest(path, 1)}, "yaml")))])
    assert path in line and "unknown field" in line


# --- contradictory backend options ---------------------------------------------------------------------------------

POS = st.integers(1, 4096)
CONTRADICTIONS = st.one_of(
    st.builds(lambda d: ({"backend": "tensorrt", "device": "cpu"}, "tensorrt"), st.none()),
    st.builds(lambda t: ({"decoding": {"temperature": t}}, "do_sample"), st.floats(0.01, 9.9).filter(lambda t: t != 1)),
    st.builds(lambda s: ({"window": {"duration_s": s}}, "windowed"), st.floats(0.1, 1000)),
    st.builds(lambda n: ({"max_input_tokens": n, "prompts": {"source": "synthetic", "input_tokens": n + 1}},
                         "input_tokens"), st.integers(1, 1000)),
    st.builds(lambda s: ({"device": "cpu", "energy": {"sampler": s}}, "energy.sampler"), st.sampled_from(["nvml", "zeus"])),
    st.builds(lambda n: ({"devices": list(range(n))}, "devices"), st.integers(2, 8)),
    st.builds(lambda s, w: ({"device": "cuda", "energy": {"sampler": s}, "window": w}, "window.mode"),
              st.sampled_from(["zeus", "codecarbon"]),
              st.sampled_from([{"mode": "steady_state"}, {"mode": "windowed", "duration_s": 5}])),
    st.builds(lambda w: ({"energy": {"sample_hz": 0}, "window": w}, "energy.sample_hz: 0"),
              st.sampled_from([{"mode": "steady_state"}, {"mode": "windowed", "duration_s": 5}])),
    st.builds(lambda tp, n: ({"backend": "vllm", "vllm": {"tensor_parallel_size": tp}, "devices": list(range(n))},
                             "devices"), st.integers(1, 8), st.integers(1, 8)).filter(lambda x: len(x[0]["devices"]) != x[0]["vllm"]["tensor_parallel_size"]),
    st.builds(lambda m: ({"backend": "vllm", "vllm": {"max_model_len": m + 16, "max_num_batched_tokens": m}},
                         "max_num_batched_tokens"), st.integers(16, 10_000)),
    st.builds(lambda m: ({"backend": "vllm", "max_input_tokens": m, "vllm": {"max_model_len": m}}, "max_model_len"),
              st.integers(16, 100_000)),
    st.builds(lambda q: ({"backend": "tensorrt", "device": "cuda", "tensorrt": {"quantization": q}}, "quantization"),
              st.sampled_from(["fp8", "int4_awq", "nvfp4"])),
    st.builds(lambda p: ({"prompts": {"source": "builtin", "path": p}}, "path"), st.text("abc/.", min_size=1)),
    st.builds(lambda w: ({"warmup": {"mode": "convergence", "window": w, "max_batches": w - 1}}, "window"),
              st.integers(3, 100)),
)


@SETTINGS
@given(case=CONTRADICTIONS)
def test_contradictory_options_are_refused_at_load(sandbox_root, case):
    extra, word = case
    line = refuse(sandbox_root, "contradiction", lambda b: [str(b.write("c.yaml", _dump({**BASE, **extra}, "yaml")))])
    assert "c.yaml" in line and word in line, line


# --- experiment names ----------------------------------------------------------------------------------------------

BAD_NAMES = st.one_of(
    st.text(min_size=1, max_size=30).filter(lambda s: any(c in s for c in "/\\$;|&`'\" \n*?<>(){}~!#%")),
    st.sampled_from(["../../etc", "a/b", "..", ".", "-rf", "$(touch pwned)", "`id`", "x;rm -rf ~", "a|b", "a\nb",
                     "C:\\x", "a" * 101, "ü", "name with space", "~root", "*"]),
)


@SETTINGS
@given(name=BAD_NAMES, via=st.sampled_from(["flag", "file"]))
def test_names_with_separators_or_shell_metacharacters_are_refused(sandbox_root, name, via):
    def args(b):
        if via == "flag":
            return [str(b.write("c.yaml", _dump(BASE, "yaml"))), "--name", name]
        return [str(b.write("c.yaml", _dump({**BASE, "name": name}, "yaml")))]

    line = refuse(sandbox_root, "bad name", args)
    assert ": name: use letters" in line, line


# --- broken studies and sweeps -------------------------------------------------------------------------------------

STUDY_BASE = {"model": MISSING_MODEL, "n_prompts": 2, "max_output_tokens": 4}
BROKEN_STUDIES = st.one_of(
    st.builds(lambda a: ({"base": STUDY_BASE, "sweep": {a: []}}, "has no values"), st.sampled_from(["seed", "n_prompts"])),
    st.builds(lambda v: ({"base": STUDY_BASE, "sweep": {"seed": v}}, "sweep.seed"), st.integers() | st.text("ab", min_size=1)),
    st.builds(lambda k: ({"base": STUDY_BASE, "sweep": {f"{k}.x": [1, 2]}}, "no valid experiment"),
              st.from_regex(r"[a-z]{3,10}", fullmatch=True)),
    st.builds(lambda vs: ({"base": STUDY_BASE, "sweep": {"n_prompts": vs}}, "no valid experiment"),
              st.lists(st.integers(-(10**9), 0), min_size=1, max_size=4)),
    st.builds(lambda e: ({"base": STUDY_BASE, "experiments": e}, "experiments"),
              st.one_of(st.integers(), st.text("ab", min_size=1), st.lists(st.integers(), min_size=1, max_size=3))),
    st.builds(lambda b: ({"base": b, "sweep": {"seed": [1]}}, "base"), st.one_of(st.integers(), st.lists(st.integers(), min_size=1))),
    st.builds(lambda n: ({"base": STUDY_BASE, "n_cycles": n}, "n_cycles"),
              st.one_of(st.integers(max_value=0), st.integers(min_value=1001), st.just("x"))),
    st.builds(lambda o: ({"base": STUDY_BASE, "order": o}, "order"), NOT_A_NUMBER),
    st.builds(lambda n: ({"base": STUDY_BASE, "name": n}, "name"), BAD_NAMES),
    st.builds(lambda g: ({"base": STUDY_BASE, "gap_seconds": g}, "gap_seconds"), st.floats(max_value=-0.001) | st.floats(3601, 1e300)),
    st.builds(lambda t: ({"base": STUDY_BASE, "experiment_timeout_s": t}, "experiment_timeout_s"), st.floats(max_value=0)),
    st.builds(lambda k: ({"base": STUDY_BASE, "experiments": [{}], k: 1}, "unknown field"),
              st.from_regex(r"[a-z]{3,12}", fullmatch=True).filter(
                  lambda k: k not in {"base", "sweep", "groups", "experiments", "name", "n_cycles", "order", "seed",
                                      "gap_seconds", "experiment_timeout_s", "max_consecutive_failures"})),
    st.builds(lambda n, v: ({"base": STUDY_BASE, "sweep": {f"energy.baseline.duration_s{i}": list(range(v))
                                                            for i in range(n)}}, "points"),
              st.integers(6, 12), st.integers(10, 40)),  # 10^6.. points: refused before expanding
)


@SETTINGS
@given(case=BROKEN_STUDIES, fmt=st.sampled_from(["json", "yaml"]))
def test_broken_studies_and_sweeps_are_refused(sandbox_root, case, fmt):
    data, word = case
    line = refuse(sandbox_root, "broken study", lambda b: [str(b.write(f"s.{fmt}", _dump(data, fmt)))])
    assert f"s.{fmt}" in line and word in line, line


# --- output paths --------------------------------------------------------------------------------------------------

SEGMENT = st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True)


@SETTINGS
@given(ups=st.integers(1, 6), tail=st.lists(SEGMENT, max_size=3), lead=st.lists(SEGMENT, max_size=2))
def test_output_paths_that_go_up_are_resolved_not_refused(sandbox_root, ups, tail, lead):
    """`-o ../results` is a path people use: accepted (resolved), so the refusal is the missing model's, not the
    output's, and still nothing is written anywhere. (A study checks the same path the same way, results/output_path.py's
    resolve_output; its missing model would fail each run instead, so it is not the probe here.)"""
    out = "/".join([*lead, *[".."] * ups, *tail])
    line = refuse(sandbox_root, "output with ..", lambda b: [str(b.write("c.yaml", _dump(BASE, "yaml"))), "-o", out])
    assert "--output" not in line and "model" in line, line


@SETTINGS
@given(kind=st.sampled_from(["to outside", "dangling", "to self", "parent is link", "absolute link"]),
       sub=st.lists(SEGMENT, max_size=2))
def test_output_links_are_followed_and_only_links_to_nowhere_refused(sandbox_root, kind, sub):
    """A results folder that is a symbolic link (scratch space on a cluster) is followed; a link that points nowhere
    or at itself cannot be, and is refused naming --output. Either way nothing is written."""
    def setup(b):
        target = {"to outside": b.outside, "dangling": b.root / "nowhere", "to self": b.cwd / "loop",
                  "parent is link": b.outside, "absolute link": b.outside}[kind]
        (b.cwd / "loop" if kind == "to self" else b.cwd / "results").symlink_to(target)

    def args(b):
        cfg = str(b.write("c.yaml", _dump(BASE, "yaml")))
        if kind == "to self":
            return [cfg, "-o", "/".join(["loop", *sub])]
        if kind == "absolute link":
            return [cfg, "-o", str(b.cwd / "results" / Path(*sub)) if sub else str(b.cwd / "results")]
        return [cfg, "-o", "/".join(["results", *sub]) if kind == "parent is link" else "results"]

    line = refuse(sandbox_root, "symlinked output", args, setup)
    if kind in ("dangling", "to self"):
        assert line.startswith("error: --output:") and "symbolic link" in line, line
    else:
        assert "--output" not in line and "model" in line, line


def test_a_run_through_dotdot_and_a_linked_results_folder_lands_in_the_resolved_folder(tmp_path, tiny_model_path):
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    (work / "results").symlink_to(scratch)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\nmodel: {tiny_model_path}\nn_prompts: 1\nmax_output_tokens: 2\nwarmup: {{n_batches: 0}}\n")
    up = run_lem("run", str(cfg), "-o", "../up", cwd=work)
    assert up.returncode == 0, up.stderr
    assert len(list((tmp_path / "up").glob("t-*/result.json"))) == 1
    linked = run_lem("run", str(cfg), "-o", "results", cwd=work)
    assert linked.returncode == 0, linked.stderr
    (result,) = scratch.glob("t-*/result.json")
    assert run_lem("results", "list", "results", cwd=work).stdout.count("t-") == 1


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_an_output_path_that_is_a_file_is_refused(sandbox_root, tiny_model_path, kind):
    def setup(b):
        (b.cwd / "results").write_text("not a folder")

    def args(b):
        cfg = str(b.write("c.yaml", _dump({**BASE, "model": str(tiny_model_path)}, "yaml")))
        return [cfg, "-o", "results" if kind == "a file" else "results/sub"]

    line = refuse(sandbox_root, "file as output", args, setup)
    assert "output" in line


# --- huge values ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "word"), [
    ("model: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    (f"model: {MISSING_MODEL}\nn_prompts: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("model: /" + "x" * 600_000, "model"),
    ("model: " + "x" * 600_000, "model"),
    (f"model: {MISSING_MODEL}\nname: " + "n" * 500_000, "name"),
    (f"model: {MISSING_MODEL}\nn_prompts: 1.0e+999", "n_prompts"),
    (f"model: {MISSING_MODEL}\nmax_output_tokens: " + "9" * 4000, "max_output_tokens"),
    (f"model: {MISSING_MODEL}\n" + "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "seed: *i\n", "seed"),
    (f"model: {MISSING_MODEL}\n#" + "x" * 1_100_000, "larger than 1 MB"),
    (f"model: \"{MISSING_MODEL}\\0\"", "model"),
    ("model: !!python/object/apply:os.system ['touch pwned']", "invalid YAML"),
])
def test_huge_and_hostile_values_are_refused(sandbox_root, content, word):
    line = refuse(sandbox_root, "huge or hostile", lambda b: [str(b.write("c.yaml", content))])
    assert word in line, line[:300]


@pytest.mark.parametrize("args", [["--n-prompts", "many"], ["--bogus-flag"], ["--lock-timeout", "-1"],
                                  ["--device", "tpu"], ["--max-output-tokens", "0"], ["--dtype", "int3"]])
def test_bad_flags_are_one_line(sandbox_root, args):
    line = refuse(sandbox_root, "bad flag", lambda b: [str(b.write("c.yaml", _dump(BASE, "yaml"))), *args])
    assert args[0].split("=")[0] in line or args[0].lstrip("-").replace("-", "_") in line, line


# --- the same refusals through a real process ----------------------------------------------------------------------

@pytest.mark.parametrize(("content", "args", "word"), [
    (b"model: [unclosed\n", [], "invalid YAML"),
    (b"model: /x\n\xff\xfe\n", [], "not UTF-8"),
    (f"model: {MISSING_MODEL}\nn_prompts: -5\n".encode(), [], "n_prompts"),
    (f"model: {MISSING_MODEL}\nmystery: 1\n".encode(), [], "mystery"),
    (f"model: {MISSING_MODEL}\n".encode(), ["--name", "$(touch pwned)/x"], "name"),
    (f"model: {MISSING_MODEL}\n".encode(), ["-o", "../../etc"], "model"),  # the path is fine; the model is not
    (f"base: {{model: {MISSING_MODEL}}}\nsweep: {{seed: []}}\n".encode(), [], "sweep"),
    (f"model: {MISSING_MODEL}\n".encode(), ["--n-prompts", "lots"], "--n-prompts"),
])
def test_real_processes_refuse_in_one_line(tmp_path, content, args, word):
    COUNTS["real process"] += 1
    cfg = tmp_path / "cfg" / "c.yaml"
    cfg.parent.mkdir()
    cfg.write_bytes(content)
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    before = _tree(tmp_path)
    proc = run_lem("run", str(cfg), *args, cwd=work, env={"LEM_CACHE_DIR": str(tmp_path / "cache")})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and word in lines[0], text
    assert _tree(tmp_path) == before
