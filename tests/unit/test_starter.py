"""The serving starter's commented examples (`lem config init --serving`): each, uncommented as its header line says
(and the fields it says to delete deleted), is taken by the path `lem run` and `lem config validate` take, and sets
its section; the starter as written sets none of them."""

from __future__ import annotations

import re

import pytest
from lem_runner.contract.serving import ServingConfig
from llenergymeasure.docs.starter import SERVING
from llenergymeasure.plan import RunOptions, plan

HEADER = re.compile(r"^  # (?P<name>[A-Z][A-Za-z -]+): uncomment(?P<rest>.*)$")
YAML_LINE = re.compile(r"^  # (?P<yaml> *[a-z_]+:( .*)?)$")


def examples(text: str) -> dict[str, tuple[list[int], list[str]]]:
    """name -> (the numbers of its commented YAML lines, the serving fields its header says to delete)."""
    lines, found = text.splitlines(), {}
    for i, line in enumerate(lines):
        m = HEADER.match(line)
        if not m:
            continue
        deleted = re.search(r"delete ([a-z_, ]+?) above", m["rest"])
        names = re.split(r", | and ", deleted[1]) if deleted else []
        block = []
        for j in range(i + 1, len(lines)):
            if not lines[j].strip():
                break
            if YAML_LINE.match(lines[j]):
                block.append(j)
        found[m["name"]] = (block, names)
    return found


def uncommented(text: str, name: str) -> str:
    block, deleted = examples(text)[name]
    out = []
    for i, line in enumerate(text.splitlines()):
        if i in block:
            out.append("  " + YAML_LINE.match(line)["yaml"])
        elif not any(re.match(rf"^  {field}:", line) for field in deleted):
            out.append(line)
    return "\n".join(out) + "\n"


def test_the_serving_starter_has_the_three_examples_each_deleting_what_it_replaces():
    found = examples(SERVING)
    assert set(found) == {"Multi-turn", "Shared prefix", "Capacity"}
    assert found["Multi-turn"][1] == ["n_requests", "input_tokens"] and found["Capacity"][1] == ["rate"]
    assert all(block for block, _ in found.values())


@pytest.mark.parametrize("name, field", [("Multi-turn", "conversations"), ("Shared prefix", "shared_prefix"),
                                         ("Capacity", "capacity")])
def test_each_example_validates_once_uncommented(tmp_path, name, field):
    if field not in ServingConfig.model_fields:
        pytest.skip(f"serving.{field} is not on this branch yet (the shared-prefix work adds it)")
    as_written = tmp_path / "serving.yaml"
    as_written.write_text(SERVING)
    assert getattr(plan(as_written, RunOptions(dry_run=True)).config.serving, field) is None
    path = tmp_path / f"{field}.yaml"
    path.write_text(uncommented(SERVING, name))
    cfg = plan(path, RunOptions(dry_run=True)).config  # what `lem config validate` and `lem run` take
    assert getattr(cfg.serving, field) is not None
