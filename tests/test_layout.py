"""The layout's rules, read from the source: the networks import no stage, no package imports itself back
in a circle, no module outgrows one concern's size, and the README's layout names what is there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "deepfake"
STAGES = ("extract", "faceset", "train", "swap", "evaluate", "sweep", "segment", "provenance", "export", "live", "ui",
          "commands", "demo", "cli")


def imports(path: Path) -> set[str]:
    """deepfake.X.Y modules a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepfake"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("deepfake"))
    return out


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_models_import_no_stage_package():
    for path in (SRC / "models").glob("*.py"):
        stages = {m for m in imports(path) if package_of(m) in STAGES}
        assert not stages, f"{path.name} imports {sorted(stages)}"


def test_no_import_cycle_between_packages():
    """Top-level imports only (those run at import time): package A -> B -> ... -> A is a cycle."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        own = path.relative_to(SRC).parts[0].removesuffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level: what importing the file runs
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepfake."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("deepfake.")]
            for n in names:
                other = package_of(n)
                if other and other != own:
                    graph.setdefault(own, set()).add(other)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(p for p in graph if p in reach(p))
    assert not cycles, f"packages in an import cycle: {cycles}"


def test_no_module_over_400_lines():
    roots = (SRC, SRC.parents[1] / "benchmarks")
    long = [f"{p.relative_to(SRC.parents[1])}: {n}" for root in roots for p in root.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long, long


def test_readme_layout_names_what_is_there():
    readme = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    named = {n for line in block.splitlines() if line.startswith("  ") and not line.startswith("   ")
             for n in re.findall(r"([a-z_]+)(?:/|\.py)", line.split("  ")[1])}
    there = {p.name.removesuffix(".py") for p in SRC.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))}
    assert there <= named, f"not in the README's layout: {sorted(there - named)}"
    assert named <= there, f"in the README's layout but not in src/deepfake: {sorted(named - there)}"
