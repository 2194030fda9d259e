"""Which module imports which, over runners/ and controller/, read with ``ast`` (nothing is imported).

Prints the package-level arrows (lem_runner.backends -> lem_runner.measurement ...), every pair of packages that
import each other (an arrow running back up), the rule breaks (the runner importing the controller, the controller
importing the runner outside its contract) and the largest modules. ``--modules`` prints every module's imports.

    python tools/import_graph.py [--modules] [--top N]
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = {"lem_runner": ROOT / "runners" / "lem_runner", "llenergymeasure": ROOT / "controller" / "llenergymeasure"}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for both trees."""
    out = {}
    for top, base in TREES.items():
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", action="store_true", help="print every module's imports")
    ap.add_argument("--top", type=int, default=10, help="largest modules to list")
    args = ap.parse_args()
    mods = modules()
    graph = {m: imports(m, p, set(mods)) for m, p in mods.items()}

    if args.modules:
        print("## module -> imported modules")
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
        print()

    rooms: dict[str, set[str]] = defaultdict(set)
    for m, targets in graph.items():
        for t in targets:
            if package_of(t) != package_of(m):
                rooms[package_of(m)].add(package_of(t))
    print("## package -> packages it imports")
    for p in sorted({package_of(m) for m in mods}):
        print(f"{p} -> {', '.join(sorted(rooms[p])) or '-'}")

    print("\n## packages importing each other (an arrow back up), with the modules behind each arrow")
    cycles = sorted({tuple(sorted((a, b))) for a in rooms for b in rooms[a] if a in rooms.get(b, set())})
    for a, b in cycles:
        for src, dst in ((a, b), (b, a)):
            via = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                         if package_of(m) == src and package_of(t) == dst)
            print(f"{src} -> {dst}: {'; '.join(via)}")
    if not cycles:
        print("none")

    print("\n## rule breaks: runner -> controller, controller -> runner outside lem_runner.contract")
    breaks = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                    if (m.startswith("lem_runner") and t.startswith("llenergymeasure"))
                    or (m.startswith("llenergymeasure") and t.startswith("lem_runner")
                        and not t.startswith("lem_runner.contract")))
    print("\n".join(breaks) or "none")

    print(f"\n## largest modules (lines), top {args.top}")
    sizes = sorted(((len(p.read_text(encoding='utf-8').splitlines()), m) for m, p in mods.items()), reverse=True)
    for n, m in sizes[: args.top]:
        print(f"{n:5d}  {m}")


if __name__ == "__main__":
    main()
