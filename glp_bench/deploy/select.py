"""What to deploy: the model (``--depth`` / ``--max-drop``), the variant (:func:`choose_variant`) and the threads
(:func:`choose_threads`) for a target, from the run's manifest and latency results. No files are written.
The rules are described in ``glp_bench.deploy.bundle``'s docstring."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import DeployError
from ..core.rundir import RunDir

# Variants in the order they are expected to be fast on a device, when nothing was measured.
SPEED_ORDER = {"cpu": ("int8", "fp32-opt", "fp32"), "cuda": ("fp16", "fp32-opt", "fp32")}


def session_settings(target, threads: int | None = None) -> dict:
    """ONNX Runtime session settings of the target, for runtime.json. Threads: ``threads``, else the target's
    last setting ("physical"/"logical" -> 0, ONNX Runtime's own default of one thread per physical core)."""
    last = target.threads[-1]
    intra = threads if threads is not None else (last if isinstance(last, int) else 0)
    providers = [target.provider]
    return {"providers": providers, "intra_op_threads": int(intra), "inter_op_threads": target.inter_op_threads,
            "spinning": target.spinning, "memory_arena": target.memory_arena,
            "graph_optimization": target.graph_optimization}


def choose_variant(target, exported: list[str], measured: dict[str, float] | None = None,
                   override: str | None = None, model: str = "the model", fp32_graph: frozenset = frozenset()) -> tuple[str, str]:
    """(variant, reason): THE rule for which ONNX variant a target gets (see the module docstring).

    ``exported``: the model's variants with status ok; ``measured``: {variant: latency in seconds} on
    the target (balanced median at the report's batch/seq/threads), for the measured ones; ``fp32_graph``: the
    lossy variants that are the fp32 graph (an int8 that met its budget only with every node in fp32), never
    chosen over another variant the target runs."""
    if override:
        if override not in exported:
            raise DeployError(f"{model} has no {override} export with status ok (it has: {', '.join(exported) or 'none'}); "
                              f"build it with 'glp-bench export --run DIR --variants {override}' or pick another --variant")
        return override, "chosen with --variant"
    usable = [v for v in target.variants if v in exported]
    if any(v not in fp32_graph for v in usable):
        usable = [v for v in usable if v not in fp32_graph]
    if not usable:
        raise DeployError(
            f"{model} has no exported variant that target {target.name} runs (it lists {', '.join(target.variants)}; "
            f"exported ok: {', '.join(exported) or 'none'}); build one with 'glp-bench export --run DIR --variants "
            f"{target.variants[0]}', or pass --variant")
    timed = {v: t for v, t in (measured or {}).items() if v in usable and t is not None}
    if timed:
        best = min(timed, key=lambda v: (timed[v], SPEED_ORDER[target.device].index(v)
                                         if v in SPEED_ORDER[target.device] else 9))
        return best, f"fastest measured on {target.name} among {', '.join(sorted(timed))}"
    order = [v for v in SPEED_ORDER[target.device] if v in usable] + [v for v in usable if v not in SPEED_ORDER[target.device]]
    return order[0], (f"not measured on {target.name}: the variant expected fastest on {target.device} "
                      f"({' > '.join(SPEED_ORDER[target.device])}) among those exported")


def choose_threads(target, measurements: list[dict], model: str, variant: str,
                   override: int | None = None) -> tuple[int, str]:
    """(intra-op threads, reason): ``override``; else the thread count with the lowest balanced median among
    the target's measurements of ``model``/``variant`` at the smallest measured batch (ties: fewer threads;
    several sequence lengths: the one measured with most thread counts, then the longest); else the
    target's default (see :func:`session_settings`)."""
    if override is not None:
        return override, "chosen with --threads"
    mine = [m for m in measurements if m.get("model") == model and m.get("variant") == variant and m.get("summary_s")]
    if mine:
        batch = min(m["batch"] for m in mine)
        at_batch = [m for m in mine if m["batch"] == batch]
        seqs = {m["seq"] for m in at_batch}
        seq = max(seqs, key=lambda s: (len({m["threads"] for m in at_batch if m["seq"] == s}), s))
        timed = {m["threads"]: m["summary_s"].get("balanced_median", m["summary_s"]["p50"])
                 for m in at_batch if m["seq"] == seq}
        best = min(timed, key=lambda t: (timed[t], t))
        others = ", ".join(f"{t}: {timed[t] * 1e3:.2f} ms" for t in sorted(timed) if t != best)
        return best, (f"fastest measured on {target.name} for {model}/{variant} (batch {batch}, seq {seq}: "
                      f"{timed[best] * 1e3:.2f} ms" + (f"; {others}" if others else "; the only thread count measured")
                      + ")")
    default = session_settings(target)["intra_op_threads"]
    return default, (f"not measured on {target.name} for {model}/{variant}: the target's default "
                     f"({default or 'ONNX Runtime default'}); run 'glp-bench latency' first to choose by measurement")



@dataclass
class Selection:
    name: str
    variant: str
    variant_reason: str
    how: dict  # {"by": "depth"|"max-drop", ...}
    row: object | None = None  # glp_bench.report.stage.Row on the target, when measured
    warnings: list[str] = field(default_factory=list)


def _rows(run: RunDir, target_name: str) -> list:
    from ..report.rows import collect_rows

    if target_name not in run.latency_targets():
        return []
    return collect_rows(run, [target_name])


def select(run: RunDir, target, depth: int | None = None, max_drop: float | None = None,
           strategy: str | None = None, variant: str | None = None) -> Selection:
    """The model and variant to deploy on ``target`` (DeployError naming the fix when there is none)."""
    from ..report.rows import recommend

    finished = run.finished_models()
    if not finished:
        raise DeployError(f"{run.path} has no fine-tuned model; run 'glp-bench prune-and-export' first")
    if (depth is None) == (max_drop is None):
        raise DeployError("pass exactly one of --depth N (deploy that depth) or --max-drop X (the depth the report "
                          "recommends within X GLUE points of the full model)")
    rows = _rows(run, target.name)
    if max_drop is not None:
        if max_drop < 0:
            raise DeployError(f"--max-drop must be >= 0 GLUE points, got {max_drop:g}")
        if not rows:
            raise DeployError(
                f"--max-drop picks the fastest model measured on {target.name}, but {run.path} has no "
                f"latency/{target.name}.json; run 'glp-bench latency --run {run.path} --device {target.name}' first, "
                "or choose a depth with --depth N")
        pool = [r for r in rows if r.deployable and (variant is None or r.variant == variant)
                and (strategy is None or strategy in r.strategies)]
        best = recommend(pool, max_drop)
        if best is None:
            measured = [r for r in pool if r.latency_s is not None and r.delta() is not None]
            closest = max(measured, key=lambda r: r.delta(), default=None)
            raise DeployError(
                f"no model measured on {target.name} is within {max_drop:g} GLUE points of the full model"
                + (f" (closest: {closest.label}, {closest.delta():+.2f} points)" if closest else "")
                + "; allow a larger --max-drop or choose a depth with --depth N")
        notes = list(best.notes) + ([_fp32_graph_warning(finished[best.name])]
                                    if best.fp32_graph else [])
        return Selection(best.name, best.variant, f"recommended by the report: fastest on {target.name} within "
                         f"{max_drop:g} GLUE points ({best.delta():+.2f})",
                         {"by": "max-drop", "max_drop_points": max_drop, "depth": best.depth}, best, notes)
    names = run.models_at_depth(depth, strategy)
    if not names:
        depths = sorted({m["depth"] for m in finished.values()}, reverse=True)
        raise DeployError(f"{run.path} has no fine-tuned model of depth {depth}"
                          + (f" for strategy {strategy}" if strategy else "")
                          + f"; depths available: {', '.join(map(str, depths))}")
    name = names[0]
    rec = finished[name]
    measured = {r.variant: r.latency_s for r in rows if r.name == name and r.deployable}
    same = frozenset({"int8"} if _fp32_graph(finished, name) else ())
    chosen, reason = choose_variant(target, run.ok_variants(name), measured, variant, name, same)
    row = next((r for r in rows if r.name == name and r.variant == chosen), None)
    how = {"by": "depth", "depth": depth, "strategy": strategy or (rec.get("strategies") or [None])[0]}
    warnings = list(row.notes) if row else []
    if chosen in same:
        warnings.append(_fp32_graph_warning(rec))
    elif same and variant is None:
        reason += "; int8 left out: it is the fp32 graph (every node kept in fp32 for --max-quant-drop)"
    return Selection(name, chosen, reason, how, row, warnings)


def _fp32_graph_warning(rec: dict) -> str:
    budget = rec["onnx"]["int8"]["build"]["quant_exclusion"]["budget_points"]
    return (f"this int8 file is the fp32 graph: --max-quant-drop {budget:g} was met only with every node in fp32, so "
            "it has no int8 speed or size; deploy --variant fp32, or re-export with a larger --max-quant-drop (the "
            "export's note names the smallest that keeps int8)")


def _fp32_graph(finished: dict, name: str) -> bool:
    from ..export.quant_exclude import is_fp32_graph

    return is_fp32_graph(((finished.get(name) or {}).get("onnx") or {}).get("int8") or {})


def _measurements(run: RunDir, target_name: str) -> list[dict]:
    from ..bench import results

    path = run.latency_path(target_name)
    return results.load(path).get("measurements", []) if path.is_file() else []


def _row_at(run: RunDir, target_name: str, name: str, variant: str, threads: int):
    """The report's row of ``name``/``variant`` at ``threads`` (the headline of the bundle's latency)."""
    from ..report.rows import collect_rows

    rows = collect_rows(run, [target_name], threads=threads)
    return next((r for r in rows if r.name == name and r.variant == variant), None)
