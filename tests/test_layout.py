"""The shape of the code (fitness tests that can fail): stages import each other without circles and only down
the pipeline, benchmarks sit on top, the runtime stays torch-free, ONNX Runtime sessions are built in one place,
only the run-directory contract (``glp_bench.core.rundir``) builds paths into a run, dotted names in the code
resolve, every test asserts and the golden files cannot be switched off from the environment."""

from __future__ import annotations

import ast
import importlib
import re
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


# Stages in data-flow order: a module may import its own stage and the stages before it, never one after it.
# bench (the measurement library and the latency stage) sits below export and gate, which measure with it.
STAGE_ORDER = ["core", "data", "prune", "bench", "export", "report", "gate", "deploy", "commands", "cli"]


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cli"  # glp_bench/__init__ sits with the dispatcher


def test_arrows_point_down_the_pipeline():
    mods = _modules()
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    back = [f"{n} -> {d}" for n, f in mods.items() for d in sorted(_imports(n, f, mods))
            if rank[_stage(d)] > rank[_stage(n)]]
    assert not back, "imports back up the pipeline (" + " < ".join(STAGE_ORDER) + "): " + "; ".join(back)


def _imported_roots(root: Path) -> dict[str, set[str]]:
    out = {}
    for f in sorted(root.rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
        out[str(f.relative_to(REPO))] = names
    return out


def test_benchmarks_sit_on_top_and_the_runtime_stays_torch_free():
    """benchmarks/ may import glp_bench; nothing imports benchmarks but benchmarks; glp_runtime imports neither
    glp_bench nor torch (the deployed bundle runs without them)."""
    pkg = _imported_roots(PACKAGE)
    assert not [f for f, names in pkg.items() if "benchmarks" in names]
    runtime = _imported_roots(REPO / "deploy" / "runtime" / "glp_runtime")
    assert runtime and not [f for f, names in runtime.items() if names & {"glp_bench", "torch", "transformers", "benchmarks"}]
    bench = _imported_roots(REPO / "benchmarks")
    assert any("glp_bench" in names for names in bench.values())


DOTTED = re.compile(r"\b((?:glp_bench|glp_runtime)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _resolves(name: str) -> bool:
    """``glp_bench.a.b.C.d`` names a module, then attributes (a dataclass field or annotation counts)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            if obj is not None and hasattr(obj, p):
                obj = getattr(obj, p)
            elif obj is not None and p in (getattr(obj, "__dataclass_fields__", {}) or getattr(obj, "__annotations__", {})):
                obj = None  # an instance attribute: nothing further to check
            else:
                return False
        return True
    return False


def test_dotted_names_in_the_code_resolve():
    """Every ``glp_bench.x.y`` / ``glp_runtime.x.y`` written in a docstring or comment names something that
    exists (dotted names are written in full so that this can be checked)."""
    stale = []
    for root in (PACKAGE, REPO / "deploy" / "runtime" / "glp_runtime", REPO / "benchmarks", REPO / "tests"):
        for f in sorted(root.rglob("*.py")):
            if f == Path(__file__).resolve():
                continue  # its docstrings show the pattern
            for m in DOTTED.finditer(f.read_text()):
                name = m.group(1).rstrip(".")
                if not _resolves(name):
                    stale.append(f"{f.relative_to(REPO)}: {name}")
    assert not stale, "dotted names that resolve to nothing: " + ", ".join(sorted(set(stale)))


def _asserts(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name.startswith("assert") or name in ("raises", "warns", "fail", "importorskip"):
                return True
    return False


def test_every_test_asserts():
    """A test that cannot fail is no test: each one asserts, expects an exception or calls an assert_* helper."""
    silent = []
    for f in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test") \
                    and not _asserts(node):
                silent.append(f"{f.name}::{node.name}")
    assert not silent, "tests that assert nothing: " + ", ".join(silent)


def test_golden_files_cannot_be_switched_off_from_the_environment():
    """The golden comparison reads no environment variable (only the explicit --regen-golden option, which fails)."""
    for f in sorted((REPO / "tests").glob("*.py")):
        assert "REGEN_GOLDEN" not in f.read_text() or f.name == "test_layout.py", f.name


MEASURE_KNOBS = {"rounds", "min_runs", "min_time", "warmup", "max_time", "max_cv"}


def test_measurement_defaults_are_defined_once():
    """rounds / min_runs / min_time / warm-up / max_time / max_cv defaults live in glp_bench.bench.settings only:
    no literal default for them in a signature, a dataclass field or a command-line option elsewhere."""
    literal = []
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).as_posix()
        if rel == "bench/settings.py" or rel.startswith("prune/") or rel in ("commands/prune.py", "commands/finetune.py"):
            continue  # prune's "warmup" is the learning-rate warm-up, not a measurement
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args.args[len(node.args.args) - len(node.args.defaults):] + node.args.kwonlyargs
                defaults = list(node.args.defaults) + list(node.args.kw_defaults)
                for a, d in zip(args, defaults, strict=True):
                    if a.arg in MEASURE_KNOBS and isinstance(d, ast.Constant) and isinstance(d.value, int | float):
                        literal.append(f"{rel}:{node.lineno} {a.arg}={d.value}")
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and node.target.id in MEASURE_KNOBS and isinstance(node.value, ast.Constant) \
                    and node.value.value is not None:
                literal.append(f"{rel}:{node.lineno} {node.target.id}")
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args \
                    and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).lstrip("-").replace("-", "_") in MEASURE_KNOBS:
                for kw in node.keywords:
                    if kw.arg == "default" and isinstance(kw.value, ast.Constant) and kw.value.value is not None:
                        literal.append(f"{rel}:{node.lineno} {node.args[0].value}")
    assert not literal, "measurement defaults written outside glp_bench.bench.settings: " + ", ".join(literal)


RAW_MANIFEST = re.compile(r"\b\w+\.(models|data|strategies|config)\[|\.(config|data)\.get\(|\b(run|rd)\.(models|strategies)\.(get|setdefault)\(|\.data\.setdefault\(")


def test_the_manifest_is_read_through_typed_records_outside_core():
    """Stages and benchmarks read the run contract through glp_bench.core.records (``run.cfg``, ``run.model(name)``,
    ``run.strategy(name)``, ``run.section(key)``) and write through RunDir's recording methods: no raw indexing of
    the manifest outside glp_bench/core."""
    raw = []
    for root in (PACKAGE, REPO / "benchmarks"):
        for f in sorted(root.rglob("*.py")):
            if f.relative_to(REPO).as_posix().startswith("glp_bench/core/"):
                continue
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if RAW_MANIFEST.search(line):
                    raw.append(f"{f.relative_to(REPO)}:{i}")
    assert not raw, "raw manifest indexing outside glp_bench.core: " + ", ".join(raw)
