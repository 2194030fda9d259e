"""The task file checks (lem_runner.contract.task) that `lem config validate` and the runner share: each bad file
is one line naming the file and line; acc, acc_norm and stderr from known log-likelihoods."""

from __future__ import annotations

import math

import pytest
from lem_runner.contract.task import TaskConfig, task_problems
from lem_runner.task.builtin import accuracy_figures

GOOD = '{"question": "q", "choices": ["a", "b"], "answer": 1}\n'


@pytest.mark.parametrize("text, words", [
    (None, ["file", "not found"]),
    ("", ["holds no items"]),
    (GOOD + "{oops\n", [":2: not JSON"]),
    (GOOD + '["a"]\n', [":2: not a JSON object"]),
    ('{"choices": ["a"], "answer": 0}\n', [":1: no string 'question' (or 'context')"]),
    ('{"question": "q", "choices": [], "answer": 0}\n', [":1: 'choices' must be a non-empty list"]),
    ('{"question": "q", "choices": ["a", "b"], "answer": 2}\n', [":1: 'answer' must be an index", "(0..1)", "not 2"]),
    ('{"question": "q", "choices": ["a", "b"], "answer": true}\n', [":1: 'answer' must be an index"]),
    ('{"context": "q", "choices": ["a", ""], "answer": 0}\n', [":1: 'choices' must be a non-empty list"]),
])
def test_a_bad_jsonl_is_one_line_naming_file_and_line(tmp_path, text, words):
    path = tmp_path / "mc.jsonl"
    if text is not None:
        path.write_text(text)
    (problem,) = task_problems(TaskConfig(path=str(path)), "pytorch", "offline")
    assert problem.startswith("quality.task.path: ") and "\n" not in problem
    assert str(path) in problem or "mc.jsonl" in problem
    for w in words:
        assert w in problem, problem


def test_a_good_jsonl_passes_and_other_backends_and_serving_are_refused(tmp_path):
    (tmp_path / "mc.jsonl").write_text(GOOD)
    task = TaskConfig(path=str(tmp_path / "mc.jsonl"))
    assert task_problems(task, "pytorch", "offline") == []
    assert task_problems(task, "vllm", "offline") == []  # prompt_logprobs (backends/vllm/logprobs.py)
    assert task_problems(None, "vllm", "serving") == []
    assert task_problems(task, "llamacpp", "offline") == []  # a second llama.cpp context (backends/llamacpp/logprobs.py)
    assert "the tensorrt backend cannot score" in task_problems(task, "tensorrt", "offline")[0]
    assert "offline scenario" in task_problems(task, "pytorch", "serving")[0]


def test_accuracy_figures_from_known_loglikelihoods():
    # item 1: b highest (right); item 2: a highest raw, but b per character (answer b); item 3: a (wrong: c)
    scores = [[-3.0, -1.0], [-2.0, -3.0], [-1.0, -5.0, -6.0]]
    choices = [["a", "b"], ["a", "bbbbbb"], ["a", "b", "c"]]
    got = accuracy_figures(scores, choices, [1, 1, 2])
    assert got["accuracy"] == pytest.approx(1 / 3)
    assert got["accuracy_norm"] == pytest.approx(2 / 3)
    hits = [1, 0, 0]
    mean = 1 / 3
    assert got["stderr"] == pytest.approx(math.sqrt(sum((h - mean) ** 2 for h in hits) / 2) / math.sqrt(3))
    assert got["n_items"] == 3
    assert accuracy_figures([[0.0, -1.0]], [["a", "b"]], [0])["stderr"] is None


def test_the_lm_eval_harness_needs_lm_eval_and_a_task_yaml(tmp_path):
    import importlib.util

    path = tmp_path / "t.yaml"
    task = TaskConfig(path=str(path), harness="lm_eval")
    if importlib.util.find_spec("lm_eval") is None:
        (problem,) = task_problems(task, "pytorch", "offline")
        assert problem.startswith("quality.task.harness: lm_eval is not installed here")
        return
    assert "not found" in task_problems(task, "pytorch", "offline")[0]
    path.write_text("task: [unclosed\n")
    assert f"{path}:" in task_problems(task, "pytorch", "offline")[0]
    path.write_text("dataset_path: json\n")
    assert "no 'task:' name" in task_problems(task, "pytorch", "offline")[0]
    path.write_text("task: mine\n")
    assert task_problems(task, "pytorch", "offline") == []


def test_a_container_run_takes_the_builtin_jsonl_but_not_an_lm_eval_yaml_nor_slurm(tmp_path):
    """The docker launcher copies the builtin harness's JSONL into the run's folder; an lm_eval YAML's data files and
    a Slurm job get no copy, so `lem config validate` refuses those in one line (llenergymeasure.config.checks)."""
    from lem_runner.contract import ExperimentConfig
    from llenergymeasure.config.checks import task_file_problems

    (tmp_path / "mc.jsonl").write_text(GOOD)
    (tmp_path / "t.yaml").write_text("task: mine\n")

    def problems(runner, harness="builtin", backend="pytorch"):
        path = tmp_path / ("mc.jsonl" if harness == "builtin" else "t.yaml")
        return task_file_problems(ExperimentConfig(model="m", backend=backend, runner=runner, quality={
            "task": {"path": str(path), "harness": harness}}))

    assert problems("docker") == [] and problems("auto", backend="vllm") == []
    (line,) = problems("docker", "lm_eval")
    assert line.startswith("quality.task.harness: lm_eval runs on this host only") and "harness: builtin" in line
    (line,) = problems("slurm")
    assert line.startswith("quality.task: not scored on runner slurm")


def test_isolated_on_the_command_line_refuses_an_lm_eval_task_like_runner_docker(tmp_path):
    """`lem run --isolated` (and `lem config validate --isolated`) puts a runner: auto/local point in a container: the
    plan refuses an lm_eval task there before any run, in one line naming the field and the way out; without
    --isolated, or with the builtin harness, nothing is refused (plan._contained_problem, the launcher it chose)."""
    from lem_runner.contract import ExperimentConfig
    from llenergymeasure.launchers.select import select_launcher
    from llenergymeasure.options import RunOptions
    from llenergymeasure.plan import _contained_problem

    (tmp_path / "mc.jsonl").write_text(GOOD)
    (tmp_path / "t.yaml").write_text("task: mine\n")

    def problem(harness, isolated):
        path = tmp_path / ("mc.jsonl" if harness == "builtin" else "t.yaml")
        cfg = ExperimentConfig(model="m", backend="pytorch", runner="local",
                               quality={"task": {"path": str(path), "harness": harness}})
        return _contained_problem(cfg, select_launcher(cfg, isolated=isolated), RunOptions(isolated=isolated))

    line = problem("lm_eval", isolated=True)
    assert line == ("quality.task.harness: lm_eval runs on this host only (its task YAML's data files do not travel "
                    "into the pytorch container); use harness: builtin, or run without --isolated")
    assert problem("lm_eval", isolated=False) is None and problem("builtin", isolated=True) is None
