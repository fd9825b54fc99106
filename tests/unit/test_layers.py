"""The package's import graph: no circle, and imports only go down the layers.

Read with ``ast`` (nothing is imported), so it also covers imports inside functions. Run as a
script to print the graph's summary: ``python tests/unit/test_layers.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "msl_ablate"
# Bottom up. A module may import its own package and the layers below its own, never above
# and never a sibling on the same layer (entry points are siblings: no command imports another).
LAYERS: list[set[str]] = [
    {"utils"},
    {"config"},
    {"data"},
    {"models"},
    {"training", "evaluation", "tracking", "pretrain"},
    {"results"},
    {"experiment"},
    {"commands"},
    {"cli"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith(PACKAGE) else None
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def part(module: str) -> str:
    """The top-level part of the package a module belongs to (``models``, ``cli``...)."""
    return module.split(".")[1] if "." in module else module


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports to another part on the same or a higher layer."""
    return sorted(
        (m, t)
        for m, targets in graph.items()
        for t in targets
        if part(m) != part(t) and part(m) in RANK and RANK[part(t)] >= RANK[part(m)]
    )


def test_every_part_of_the_package_has_a_layer():
    parts = {part(m) for m in modules()} - {PACKAGE}
    assert parts == set(RANK), f"place {sorted(parts - set(RANK))} in LAYERS"


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_imports_only_go_down():
    assert upward_imports(import_graph()) == []


def test_composing_and_checking_a_config_imports_no_torch():
    code = (
        "import sys\n"
        "from msl_ablate.config.compose import compose\n"
        "from msl_ablate.experiment.checks import check\n"
        "check(compose(['vision=siglip_so400m_p14_384', 'lm=phi_2', 'strategy=vfrozen_lmlora']))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'lightning') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


if __name__ == "__main__":
    graph = import_graph()
    print(f"modules: {len(graph)}, internal import edges: {sum(map(len, graph.values()))}")
    print(f"circles: {cycles(graph)}")
    print(f"upward imports: {upward_imports(graph)}")
