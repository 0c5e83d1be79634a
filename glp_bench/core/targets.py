"""Deployment targets are data, not code: TOML files that ``glp-bench latency --device NAME`` picks up.

A target says which execution provider, threads, spinning, memory arena, graph optimization, model
variants, batch sizes and sequence lengths to measure, plus an optional memory budget and the CPU
architecture it stands for. ``cpu``, ``cuda`` and ``embedded-arm64`` ship with glp-bench; every field
is documented in ``glp_bench/core/target_files/embedded-arm64.toml``.

Where targets are found (first match wins):

1. ``--device path/to/my-board.toml`` (anything ending in ``.toml`` or naming an existing file);
2. ``NAME.toml`` in each folder of ``$GLP_BENCH_TARGETS`` (``os.pathsep``-separated);
3. ``NAME.toml`` in ``./deploy/targets`` of the current directory (put your own there);
4. the shipped targets, ``glp_bench/core/target_files`` (the only copy: the same files from a checkout and
   from an installed package).

On a desktop an embedded target is an *emulation* (thread cap, CPU pinning, the target's precision);
:meth:`Target.emulation` says what is and is not emulated, and the report repeats it.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import TargetError
from .vocab import GRAPH_OPTIMIZATIONS, ONNX_VARIANTS

PACKAGED = Path(__file__).resolve().parent / "target_files"
ENV_VAR = "GLP_BENCH_TARGETS"

DEVICES = ("cpu", "cuda")
VARIANTS = ONNX_VARIANTS
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "arm64": "arm64",
                "armv8": "arm64", "armv7l": "arm32", "armv7": "arm32", "arm32": "arm32"}


@dataclass(frozen=True)
class Target:
    name: str
    device: str = "cpu"
    description: str = ""
    variants: tuple[str, ...] = ("fp32", "fp32-opt", "int8")
    threads: tuple[int | str, ...] = (1, "physical")
    inter_op_threads: int = 1
    spinning: bool = True
    memory_arena: bool = True
    graph_optimization: str = "all"
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lengths: tuple[int, ...] = (128,)
    pin_cpus: tuple[int, ...] | str | None = None
    io_binding: bool = True
    tensorrt: bool = False
    memory_budget_mb: float | None = None
    arch: str | None = None
    quantization: str | None = None
    torch_reference: bool = True
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def provider(self) -> str:
        if self.device == "cuda":
            return "TensorrtExecutionProvider" if self.tensorrt else "CUDAExecutionProvider"
        return "CPUExecutionProvider"

    def thread_counts(self, physical: int | None = None, logical: int | None = None) -> list[int]:
        """The concrete intra-op thread counts: "physical"/"logical" resolved, duplicates dropped."""
        from .machine import physical_cores

        physical = physical or physical_cores()
        logical = logical or os.cpu_count() or physical
        out: list[int] = []
        for t in self.threads:
            n = {"physical": physical, "logical": logical}.get(t, t) if isinstance(t, str) else t
            if n not in out:
                out.append(int(n))
        return out

    def affinity(self, threads: int, available: set[int] | None = None) -> tuple[int, ...] | None:
        """CPU ids to pin a worker running ``threads`` threads to (None: no pinning)."""
        if self.pin_cpus is None:
            return None
        if available is None:
            available = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
        if not available:
            return None
        cpus = sorted(available)
        if self.pin_cpus == "auto":
            return tuple(cpus[: max(threads, 1)])
        chosen = tuple(c for c in self.pin_cpus if c in available)
        return chosen or None

    def emulation(self, host_arch: str | None = None) -> dict:
        """What a measurement on this host says about the target: ``{"emulated": bool, "notes": [...]}``."""
        host = normalize_arch(host_arch or platform.machine())
        notes = list(self.notes)
        emulated = self.arch is not None and self.arch != host
        if emulated:
            caps = [f"threads capped at {', '.join(str(t) for t in self.threads)}"]
            if self.pin_cpus is not None:
                caps.append("worker pinned to CPUs" + (" (first N)" if self.pin_cpus == "auto" else f" {list(self.pin_cpus)}"))
            if not self.spinning:
                caps.append("thread spinning off")
            if not self.memory_arena:
                caps.append("memory arena off")
            notes.insert(0, (
                f"emulation of a {self.arch} target on this {host} host: {'; '.join(caps)}; variants "
                f"{', '.join(self.variants)} run with {host} kernels, so absolute latencies are this host's and "
                "only the ratios between depths/variants carry over; re-run on the device for its real numbers"
            ))
        return {"emulated": emulated, "host_arch": host, "notes": notes}

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def normalize_arch(arch: str) -> str:
    return ARCH_ALIASES.get(arch.lower(), arch.lower())


def search_path() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "deploy" / "targets", PACKAGED]
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def available_targets() -> dict[str, Path]:
    """{name: file} of every target on the search path (first one of a name wins)."""
    found: dict[str, Path] = {}
    for d in search_path():
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                found.setdefault(f.stem, f)
    return found


def resolve_target(spec: str) -> Target:
    """The target named ``spec`` (a name on the search path or a path to a .toml file)."""
    path = Path(spec).expanduser()
    if spec.endswith(".toml") or os.sep in spec or path.is_file():
        if not path.is_file():
            raise TargetError(f"target file {path} does not exist; pass an existing .toml or a target name "
                              f"({', '.join(available_targets())})")
        return load_target(path)
    found = available_targets()
    if spec not in found:
        raise TargetError(
            f"unknown target {spec!r}; known: {', '.join(found) or 'none'}. Add your own as {spec}.toml in "
            f"./deploy/targets or ${ENV_VAR}, or pass --device path/to/{spec}.toml"
        )
    return load_target(found[spec])


def load_target(path: str | Path) -> Target:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TargetError(f"{path} is not valid TOML ({e}); fix the file (see glp_bench/core/target_files/embedded-arm64.toml)") from None
    except OSError as e:
        raise TargetError(f"cannot read target file {path}: {e.strerror}") from None
    return parse_target(data, name=path.stem, source=str(path))


def parse_target(data: dict, name: str, source: str = "<dict>") -> Target:
    """Validate a target's TOML table and build the Target; TargetError names the file, key and fix."""

    def bad(key: str, why: str) -> TargetError:
        return TargetError(f"{source}: '{key}' {why}")

    known = set(Target.__dataclass_fields__) - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise bad(unknown[0], f"is not a target field; known fields: {', '.join(sorted(known - {'notes'}))}, notes")

    def get(key, types, default):
        v = data.get(key, default)
        if v is not None and not isinstance(v, types) or isinstance(v, bool) and bool not in _tuple(types):
            raise bad(key, f"must be {_typename(types)}, got {v!r}")
        return v

    def int_list(key, default, positive=True):
        v = data.get(key, default)
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list | tuple) or not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise bad(key, f"must be a non-empty list of integers, got {v!r}")
        if positive and any(x < 1 for x in v):
            raise bad(key, f"must hold positive integers, got {v!r}")
        return tuple(v)

    device = get("device", str, "cpu")
    if device not in DEVICES:
        raise bad("device", f"must be one of {', '.join(DEVICES)}, got {device!r}")

    variants = data.get("variants", ["fp32", "fp32-opt", "fp16"] if device == "cuda" else list(Target.variants))
    if isinstance(variants, str):
        variants = [variants]
    if not isinstance(variants, list) or not variants or not all(v in VARIANTS for v in variants):
        raise bad("variants", f"must be a non-empty list drawn from {', '.join(VARIANTS)}, got {variants!r}")

    threads = data.get("threads", list(Target.threads))
    if isinstance(threads, int | str) and not isinstance(threads, bool):
        threads = [threads]
    if (not isinstance(threads, list) or not threads
            or not all((isinstance(t, int) and not isinstance(t, bool) and t >= 1) or t in ("physical", "logical")
                       for t in threads)):
        raise bad("threads", f'must be a list of positive integers or "physical"/"logical", got {threads!r}')

    pin = data.get("pin_cpus")
    if pin is not None and pin != "auto":
        pin = int_list("pin_cpus", pin, positive=False)
        if any(c < 0 for c in pin):
            raise bad("pin_cpus", "must hold CPU ids >= 0")

    graph = get("graph_optimization", str, "all")
    if graph not in GRAPH_OPTIMIZATIONS:
        raise bad("graph_optimization", f"must be one of {', '.join(GRAPH_OPTIMIZATIONS)}, got {graph!r}")

    budget = get("memory_budget_mb", int | float, None)
    if budget is not None and budget <= 0:
        raise bad("memory_budget_mb", "must be positive")
    inter = get("inter_op_threads", int, 1)
    if inter < 1:
        raise bad("inter_op_threads", "must be >= 1")
    tensorrt = get("tensorrt", bool, False)
    if tensorrt and device != "cuda":
        raise bad("tensorrt", 'needs device = "cuda"')
    if "fp16" in variants and device != "cuda":
        raise bad("variants", 'lists fp16, which is exported for GPUs only; use device = "cuda" or drop it')
    arch = get("arch", str, None)
    notes = data.get("notes", [])
    if isinstance(notes, str):
        notes = [notes]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise bad("notes", "must be a string or a list of strings")
    tname = get("name", str, name)

    return Target(
        name=tname,
        device=device,
        description=get("description", str, ""),
        variants=tuple(variants),
        threads=tuple(threads),
        inter_op_threads=inter,
        spinning=get("spinning", bool, True),
        memory_arena=get("memory_arena", bool, True),
        graph_optimization=graph,
        batch_sizes=int_list("batch_sizes", list(Target.batch_sizes)),
        seq_lengths=int_list("seq_lengths", list(Target.seq_lengths)),
        pin_cpus=pin,
        io_binding=get("io_binding", bool, True),
        tensorrt=tensorrt,
        memory_budget_mb=float(budget) if budget is not None else None,
        arch=normalize_arch(arch) if arch else None,
        quantization=get("quantization", str, None),
        torch_reference=get("torch_reference", bool, True),
        source=source,
        notes=tuple(notes),
    )


def _tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _typename(types) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
    parts = getattr(types, "__args__", None) or _tuple(types)
    return " or ".join(names.get(t, t.__name__) for t in parts)
