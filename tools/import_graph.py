"""Which module imports which, over runners/ and controller/, read with ``ast`` (nothing is imported).

Prints the package-level arrows (lem_runner.backends -> lem_runner.measurement ...), every circle of packages (two
or more that reach each other: an arrow running back up, at any distance), every circle of modules, the rule breaks
(the runner importing the controller, the controller importing the runner outside its contract, the contract
importing any other part of the runner: it is the bottom layer) and the largest modules. ``--modules`` prints every
module's imports. Exits 1 when there is a circle (of packages or of modules) or a rule break, so ``make lint``/CI can hold the line.

Imports are read statically, function-level ones included; a module named in a string and loaded with importlib
(the backend registry loading ``backends/<name>/spec.py``, a spec's ``module:function``) is a plug-in, not an arrow.

    python tools/import_graph.py [--modules] [--top N]
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = {"lem_runner": ROOT / "runners" / "lem_runner", "llenergymeasure": ROOT / "controller" / "llenergymeasure"}
#: the runner's bottom layer: it may import only itself
CONTRACT = "lem_runner.contract"
#: below even the contract: the simulated NVML library, which the contract's NVML access installs when asked; it may
#: import nothing of lem's but itself
BELOW_CONTRACT = "lem_runner.simgpu"


def modules(trees: dict[str, Path] | None = None) -> dict[str, Path]:
    """Dotted module name -> file, for both trees."""
    out = {}
    for top, base in (trees or TREES).items():
        for path in sorted(base.rglob("*.py")):
            parts = [top, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (relative imports resolved; ``from pkg import mod`` counts the module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def package_of(module: str) -> str:
    """The room a module lives in: its first two dotted parts (lem_runner.backends, llenergymeasure.results)."""
    return ".".join(module.split(".")[:2])


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one node (each a circle of imports), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the graphs are small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = defaultdict(set)
    for m, targets in graph.items():
        rooms[package_of(m)]
        for t in targets:
            if package_of(t) != package_of(m):
                rooms[package_of(m)].add(package_of(t))
    return rooms


def rule_breaks(graph: dict[str, set[str]]) -> list[str]:
    """Imports the layering forbids: runner -> controller; controller -> runner outside the contract; the contract ->
    any other part of the runner (backends, measurement, ...: it sits below them all) but the simulated NVML library,
    which imports nothing of lem's but itself."""
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                  if (m.startswith("lem_runner") and t.startswith("llenergymeasure"))
                  or (m.startswith("llenergymeasure") and t.startswith("lem_runner") and not _in(t, CONTRACT))
                  or (_in(m, CONTRACT) and t.startswith("lem_runner") and not _in(t, CONTRACT)
                      and not _in(t, BELOW_CONTRACT))
                  or (_in(m, BELOW_CONTRACT) and t.startswith(("lem_runner", "llenergymeasure"))
                      and not _in(t, BELOW_CONTRACT)))


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def problems(graph: dict[str, set[str]]) -> list[str]:
    """Every circle of packages, every circle of modules and every rule break, one line each; [] when the layering
    holds. A circle of modules inside one package fails too: two modules that need each other are one module, or
    share a third they should both import (a function-level import that breaks the loop at run time is still one)."""
    out = [f"package circle: {' <-> '.join(c)}" for c in circles(package_graph(graph))]
    out += [f"module circle: {' <-> '.join(c)}" for c in circles(graph)]
    return out + [f"rule break: {b}" for b in rule_breaks(graph)]


def import_graph(trees: dict[str, Path] | None = None) -> dict[str, set[str]]:
    mods = modules(trees)
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", action="store_true", help="print every module's imports")
    ap.add_argument("--top", type=int, default=10, help="largest modules to list")
    args = ap.parse_args()
    mods = modules()
    graph = import_graph()

    if args.modules:
        print("## module -> imported modules")
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
        print()

    rooms = package_graph(graph)
    print("## package -> packages it imports")
    for p in sorted({package_of(m) for m in mods}):
        print(f"{p} -> {', '.join(sorted(rooms[p])) or '-'}")

    print("\n## circles of packages (an arrow back up), with the modules behind each arrow")
    for circle in circles(rooms):
        print(" <-> ".join(circle))
        for src in circle:
            via = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                         if package_of(m) == src and package_of(t) in circle and package_of(t) != src)
            print(f"  {src}: {'; '.join(via)}")
    if not circles(rooms):
        print("none")

    print("\n## circles of modules")
    print("\n".join(" <-> ".join(c) for c in circles(graph)) or "none")

    print(f"\n## rule breaks: runner -> controller, controller -> runner outside {CONTRACT}, {CONTRACT} -> the rest "
          "of the runner")
    print("\n".join(rule_breaks(graph)) or "none")

    print(f"\n## largest modules (lines), top {args.top}")
    sizes = sorted(((len(p.read_text(encoding='utf-8').splitlines()), m) for m, p in mods.items()), reverse=True)
    for n, m in sizes[: args.top]:
        print(f"{n:5d}  {m}")
    return 1 if problems(graph) else 0


if __name__ == "__main__":
    raise SystemExit(main())
