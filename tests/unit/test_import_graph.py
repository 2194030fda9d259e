"""The layering check (tools/import_graph.py) on the real tree, and on a copy of it given the import the contract
once had: the contract is the runner's bottom layer, and a circle of packages fails the check."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_graph)


def test_the_tree_has_no_circle_of_packages_and_no_rule_break():
    graph = import_graph.import_graph()
    assert import_graph.problems(graph) == []
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_the_contract_importing_the_backends_is_a_rule_break_and_a_circle(tmp_path):
    runner = tmp_path / "lem_runner"
    shutil.copytree(ROOT / "runners" / "lem_runner", runner, ignore=shutil.ignore_patterns("__pycache__"))
    registry = runner / "contract" / "backends.py"
    registry.write_text(registry.read_text() + "\n\ndef _folders():\n    import lem_runner.backends as pkg\n\n"
                        "    return pkg.__path__\n")
    graph = import_graph.import_graph({"lem_runner": runner})
    found = import_graph.problems(graph)
    assert "rule break: lem_runner.contract.backends -> lem_runner.backends" in found, found
    assert any(p.startswith("package circle:") and "lem_runner.backends" in p and "lem_runner.contract" in p
               for p in found), found


def test_a_longer_circle_is_found_too():
    graph = {"t.a.x": {"t.b.y"}, "t.b.y": {"t.c.z"}, "t.c.z": {"t.a.w"}, "t.a.w": set(), "t.d.q": {"t.a.x"}}
    assert import_graph.circles(import_graph.package_graph(graph)) == [["t.a", "t.b", "t.c"]]
    assert import_graph.circles(graph) == []


def test_a_circle_of_modules_inside_one_package_fails_the_check_too():
    # serving.schedule and serving.prefix once needed each other (a function-level import broke the loop at run time)
    graph = {"t.a.x": {"t.a.y"}, "t.a.y": {"t.a.x"}, "t.b.z": {"t.a.x"}}
    assert import_graph.problems(graph) == ["module circle: t.a.x <-> t.a.y"]
    assert import_graph.problems({"t.a.x": {"t.a.y"}, "t.a.y": set()}) == []
