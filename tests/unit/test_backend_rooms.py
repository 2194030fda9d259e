"""Outside each backend's own folder (runners/lem_runner/backends/<name>/), no runner or controller module names a
backend: no string that is a backend's name or one of its fields (``"vllm"``, ``"tensorrt.max_batch_size"``), no
attribute access to a backend's section (``cfg.pytorch``), no import of a backend's folder. Docstrings and field
descriptions may speak of engines (prose, not behaviour). Adding or removing a backend is then its folder alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from lem_runner.contract import backend_names

ROOT = Path(__file__).resolve().parents[2]


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _descriptions(tree: ast.AST) -> set[int]:
    """String arguments of ``description=``/``help=`` keywords: prose for the reader."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("description", "help"):
            out |= {id(n) for n in ast.walk(node.value) if isinstance(n, ast.Constant)}
    return out


def names_of_backends(names: tuple[str, ...], root: Path = ROOT) -> list[str]:
    own = {str(root / "runners" / "lem_runner" / "backends" / n) for n in names}
    pattern = re.compile(r"^(" + "|".join(map(re.escape, names)) + r")(\.|:|$)")
    found = []
    for tree_root in (root / "runners" / "lem_runner", root / "controller" / "llenergymeasure"):
        for path in sorted(tree_root.rglob("*.py")):
            if str(path.parent) in own or any(str(path).startswith(o + "/") for o in own):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            prose = _docstrings(tree) | _descriptions(tree)
            where = path.relative_to(root)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose \
                        and pattern.match(node.value):
                    found.append(f"{where}:{node.lineno}: {node.value[:60]!r}")
                elif isinstance(node, ast.Attribute) and node.attr in names:
                    found.append(f"{where}:{node.lineno}: .{node.attr}")
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    for module in [a.name for a in node.names] + [getattr(node, "module", None) or ""]:
                        if any(part in names for part in module.split(".")):
                            found.append(f"{where}:{node.lineno}: import {module}")
    return found


def test_no_module_outside_a_backends_folder_names_a_backend():
    assert names_of_backends(backend_names()) == []


def test_the_scan_finds_a_backend_named_outside_its_folder(tmp_path):
    """The scan on a tree given what this layout removed: a branch on a backend's name in the contract, a server
    command importing a backend's folder."""
    contract = tmp_path / "runners" / "lem_runner" / "contract"
    contract.mkdir(parents=True)
    (contract / "engine.py").write_text('def refusal(config):\n    """Why."""\n    if config.backend == "tensorrt" '
                                        'and config.tensorrt.kv_cache_enable_block_reuse:\n        return "x"\n')
    (tmp_path / "controller" / "llenergymeasure").mkdir(parents=True)
    (tmp_path / "controller" / "llenergymeasure" / "s.py").write_text(
        "from lem_runner.backends.vllm.backend import engine_args\n")
    found = names_of_backends(("pytorch", "vllm", "tensorrt"), tmp_path)
    assert found == ["runners/lem_runner/contract/engine.py:3: 'tensorrt'",
                     "runners/lem_runner/contract/engine.py:3: .tensorrt",
                     "controller/llenergymeasure/s.py:1: import lem_runner.backends.vllm.backend"], found
