"""The shape of the code: stages import each other without circles, ONNX Runtime sessions are built in one
place, and only the run-directory contract (``glp_bench.core.rundir``) builds paths into a run."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "glp_bench"
RUN_PARTS = {"manifest.json", "latency", "report.md", "teacher", "search", "export.json", "train-logits.npy"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, f: Path, mods: dict) -> set[str]:
    """glp_bench modules that ``name`` imports anywhere (module level or inside functions)."""
    pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                if f"{mod}.{alias.name}" in mods:
                    deps.add(f"{mod}.{alias.name}")
                elif mod in mods and mods[mod].name != "__init__.py":
                    deps.add(mod)
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names if a.name in mods and mods[a.name].name != "__init__.py"}
    deps.discard(name)
    return deps


def test_no_import_circles():
    mods = _modules()
    graph = {n: _imports(n, f, mods) for n, f in mods.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(n, path):
        state[n] = 1
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]) if d in path else f"{n} -> {d}")
            elif d not in state:
                visit(d, path + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import circles: " + "; ".join(cycles)


def _calls(root: Path, name: str) -> list[str]:
    hits = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                if called == name:
                    hits.append(f"{f.relative_to(REPO)}:{node.lineno}")
    return hits


def test_one_place_builds_onnxruntime_sessions():
    hits = _calls(PACKAGE, "InferenceSession") + _calls(REPO / "deploy" / "runtime", "InferenceSession")
    assert [h.split(":")[0] for h in hits] == ["deploy/runtime/glp_runtime/session.py"], hits


def test_only_the_run_directory_contract_builds_run_paths():
    offenders = []
    for f in sorted(PACKAGE.rglob("*.py")):
        if f.relative_to(PACKAGE).as_posix() == "core/rundir.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                for side in (node.left, node.right):
                    if isinstance(side, ast.Constant) and side.value in RUN_PARTS:
                        offenders.append(f"{f.relative_to(REPO)}:{node.lineno} ({side.value!r})")
    assert not offenders, "run paths built outside glp_bench.core.rundir: " + ", ".join(offenders)
