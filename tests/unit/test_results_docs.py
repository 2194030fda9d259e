"""The generated documents: the committed field and column references must match what the models generate now, and
the schemas must be valid JSON Schema that agree with the models on what they accept."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from lem_runner.contract import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.docs.reference import COMMAND, reference_markdown, type_name
from llenergymeasure.docs.schema import schemas
from llenergymeasure.results.columns import COLUMNS, columns_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_config_reference_is_not_stale():
    committed = (DOCS / "config-reference.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), f"docs/config-reference.md is stale: run `{COMMAND}`"


def test_results_columns_doc_is_not_stale():
    committed = (DOCS / "results-columns.md").read_text(encoding="utf-8")
    assert committed == columns_markdown(), \
        "docs/results-columns.md is stale: run `lem config reference --columns -o docs/results-columns.md`"


def _fields(model, prefix=""):
    for name, info in model.model_fields.items():
        yield f"{prefix}{name}"
        ann = info.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            yield from _fields(ann, f"{prefix}{name}.")


@pytest.mark.parametrize("model", [ExperimentConfig, StudyConfig])
def test_reference_lists_every_field(model):
    text = reference_markdown()
    for path in _fields(model):
        assert f"| `{path}` |" in text


def test_type_names_are_readable():
    from typing import Literal

    assert type_name(Literal["a", "b"]) == '"a" \\| "b"'
    assert type_name(int | None) == "int \\| null"
    assert type_name(list[int]) == "list[int]"


def test_schemas_are_valid_and_agree_with_the_models():
    docs = schemas()
    for doc in docs.values():
        jsonschema.Draft202012Validator.check_schema(doc)
    config = jsonschema.Draft202012Validator(docs["config"])
    ok = [{}, {"model": "m", "pytorch": {"batch_size": 4}, "energy": {"baseline": {"mode": "off"}}},
          {"base": {"n_prompts": 4}, "sweep": {"pytorch.batch_size": [1, 2]}, "n_cycles": 3}]
    for data in ok:
        assert config.is_valid(data), data
        if StudyConfig.model_fields.keys() & data.keys():
            StudyConfig.model_validate(data)
        else:
            ExperimentConfig.model_validate(data)
    bad = [{"n_prompts": 0}, {"backend": "onnx"}, {"pytorch": {"batchsize": 1}}, {"base": {"dtype": "int3"}},
           {"sweep": {"pytorch.batch_size": [1]}, "model": "m"}, {"experiments": [{"warmup": {"mode": "never"}}]}]
    for data in bad:
        assert not config.is_valid(data), data


def test_every_column_has_a_unit_or_is_not_a_quantity():
    units = ("_s", "_ms", "_j", "_w", "_per_s", "_hz", "_share", "_diff", "flops", "tokens", "_batches", "_count",
             "_samples", "requests", "_size", "_second", "_token", "_g", "_per_kwh")
    # PUE is a ratio; task accuracy (acc, acc_norm, its stderr) a share of items under its fixed name task_accuracy;
    # the fidelity figures (shares, tokens, nats) and perplexity (a ratio) under the names issue 29 fixes
    fixed = {"fidelity_exact_match", "fidelity_agreement", "fidelity_first_divergence_mean", "fidelity_kl_mean_nats",
             "perplexity"}
    quantities = [c.name for c in COLUMNS if c.kind == "float" and c.name != "pue"
                  and not c.name.startswith("task_accuracy") and c.name not in fixed]
    assert [n for n in quantities if not n.endswith(units)] == []
    assert len({c.name for c in COLUMNS}) == len(COLUMNS)
