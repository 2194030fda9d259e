"""A study's ``quality.reference``: which point it names, the refusals when it names none or the points send other
prompts, the reference moved to the front until it has run, and what each later run is handed (the newest
outputs, or why there are none)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import make_config
from lem_runner.contract.quality import (
    COMPARED_FILE,
    REFERENCE_FILE,
    FidelityRequest,
    ReferenceOutputs,
    ReferenceRequest,
)
from llenergymeasure.config.study import StudyPoint, reference_point
from llenergymeasure.errors import ConfigError
from llenergymeasure.study.execute import StudyOutcome
from llenergymeasure.study.manifest import Manifest, ManifestEntry
from llenergymeasure.study.reference import fidelity_request, reference_first


def _points(reference="dtype=float32", **other):
    q = {"quality": {"reference": reference}} if reference else {}
    return [StudyPoint("dtype=bfloat16", make_config(dtype="bfloat16", **q, **other)),
            StudyPoint("dtype=float32", make_config(dtype="float32", **q))]


def test_the_reference_is_found_by_label_or_name():
    assert reference_point(_points(), "s") == 1
    named = _points(reference="mine")
    named[0] = StudyPoint(named[0].label, named[0].config.model_copy(update={"name": "mine"}))
    assert reference_point(named, "s") == 0
    assert reference_point(_points(reference=None), "s") is None


@pytest.mark.parametrize("points, words", [
    (_points(reference="dtype=int3"), "no point of the study is 'dtype=int3' (its points: 'dtype=bfloat16', "),
    (_points(n_prompts=7), "point 'dtype=bfloat16' sends other prompts than the reference 'dtype=float32' (it sets "
                           "n_prompts otherwise)"),
    ([_points()[0], StudyPoint("b", make_config(quality={"reference": "b"}))], "every point names the same reference"),
])
def test_a_reference_that_cannot_be_compared_with_is_refused(points, words):
    with pytest.raises(ConfigError, match="^s: quality.reference: ") as exc:
        reference_point(points, "s")
    assert words in str(exc.value)


def _outcome(tmp_path, statuses):
    now = datetime(2025, 1, 1, tzinfo=UTC)
    entries = [ManifestEntry(run=i + 1, point=p, cycle=c, label="x", name=f"r{i}", status=s, result_path=f"r{i}")
               for i, (p, c, s) in enumerate(statuses)]
    manifest = Manifest(study="s", config_hash="h", created=now, updated=now, n_cycles=2, order="interleave",
                        seed=0, points=[], entries=entries)
    return StudyOutcome(tmp_path, manifest, _points(), reference=1)


def test_the_reference_runs_first_until_it_has_run(tmp_path):
    outcome = _outcome(tmp_path, [(0, 1, "pending"), (1, 1, "pending"), (0, 2, "pending"), (1, 2, "pending")])
    pending = outcome.manifest.entries
    assert [e.run for e in reference_first(outcome, pending)] == [2, 1, 3, 4]
    done = _outcome(tmp_path, [(0, 1, "pending"), (1, 1, "done"), (0, 2, "pending")])
    assert reference_first(done, done.manifest.entries) == done.manifest.entries


def test_a_later_run_is_handed_the_newest_outputs_or_told_why_there_are_none(tmp_path):
    outcome = _outcome(tmp_path, [(1, 1, "done"), (0, 1, "pending"), (1, 2, "done"), (1, 3, "failed")])
    ref, compared = outcome.manifest.entries[0], outcome.manifest.entries[1]
    assert fidelity_request(outcome, ref) == (FidelityRequest(reference="dtype=float32", is_reference=True), None)
    missing, none = fidelity_request(outcome, compared)
    assert none is None and missing.outputs_file is None and "has no finished run with outputs" in missing.missing
    for i, folder in ((1, "r0"), (2, "r2"), (3, "r3")):
        (tmp_path / folder).mkdir()
        outputs = ReferenceOutputs(reference="dtype=float32", kl_top_k=20, requests=[
            ReferenceRequest(prompt_ids=[1], output_ids=[i], logprobs=[])])
        (tmp_path / folder / REFERENCE_FILE).write_text(outputs.model_dump_json())
    told, source = fidelity_request(outcome, compared)
    assert told == FidelityRequest(reference="dtype=float32", outputs_file=COMPARED_FILE)
    assert source == tmp_path / "r2" / REFERENCE_FILE  # run 3, the newest done one (run 4 failed)
    (tmp_path / "r2" / REFERENCE_FILE).write_text("")  # an empty file: the older one
    assert fidelity_request(outcome, compared)[1] == tmp_path / "r0" / REFERENCE_FILE


def test_a_reference_is_refused_outside_a_study_and_on_slurm():
    from llenergymeasure.config.checks import quality_setting_problems

    cfg = make_config(quality={"reference": "dtype=float32"})
    assert quality_setting_problems(cfg, in_study=True) == []
    (single,) = quality_setting_problems(cfg, in_study=False)
    assert single.startswith("quality.reference: 'dtype=float32' names a point of a study (lem run STUDY.yaml)")
    (slurm,) = quality_setting_problems(cfg.model_copy(update={"runner": "slurm"}), in_study=True)
    assert slurm.startswith("quality.reference: not on runner slurm yet")
