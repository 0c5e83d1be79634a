"""``latency/<target>.json``: building it from measurements, loading it, speedups and table rows.

Format ``glp-bench-latency``, version 1 (``jsonio.stamp`` adds ``format``, ``version``, ``environment``)::

    created, complete (false while rounds are still running), rounds_done
    run:          {"path", "task", "model"}
    target:       the target's fields (targets.Target.to_dict) + {"emulated", "host_arch", "notes"}
    settings:     {"rounds", "min_runs", "min_time_s", "warmup_runs", "max_time_s", "max_cv", "order"}
    host:         {"onnxruntime", "available_providers", "cpu_affinity"}
    reference:    {"onnx": "<model>/fp32", "torch": "<model>/torch-eager" | null, "depth": full depth}
    measurements: [one per configuration:
        {"key": "depth-05/int8/b1/s128/t1", "model", "depth", "kept_layers", "variant" ("torch-eager" for
         the PyTorch reference), "backend", "path" (relative to the run), "file_size", "sha256",
         "batch", "seq", "threads", "provider", "spinning", "graph_optimization", "memory_arena",
         "io_binding", "cpu_affinity",
         "samples_s": [[seconds, ...] per round], "positions": [position in each round's order],
         "summary_s": {"n", "mean", "std", "cv", "min", "max", "p50", "p90", "p99", "balanced_median"},
         "unstable": cv > max_cv, "throughput": {"sequences_per_s", "tokens_per_s"} (batch / mean),
         "peak_rss_mb", "session_rss_mb", "session_init_s": [per round], "over_budget": bool | null,
         "speedup": {"vs_full_fp32", "vs_torch_eager"} (ratios of balanced medians, same batch/seq/threads),
         "dev_scores": the variant's dev scores from the manifest, "info": what the worker saw, "error",
         "measured_at": the "created" of the run that measured it (earlier runs' rows are kept: bench.merge)}]
    depth_fit:    [{"variant", "batch", "seq", "threads", "slope_s", "intercept_s", "r2", "points"}]
    warnings:     [one line each]
    earlier_runs: [{"created", "complete", "rounds_done", "settings"}] of the measurements kept from earlier runs
    merge:        {"from", "kept", "replaced", "kept_over_failed", "dropped_stale"} (counts), when merged

Speedups use ``stats.balanced_median`` (mean over rounds of each round's median), the estimator that
interleaved rounds make immune to slow drift of the machine.
"""

from __future__ import annotations

import os
from collections import defaultdict

from ..core.jsonio import atomic_write_json, read_versioned, stamp
from ..core.rundir import now
from ..core.vocab import TORCH_VARIANT, variant_rank
from . import stats

FORMAT = "glp-bench-latency"
VERSION = 1


def shape_words(shape: dict) -> str:
    """A measurement's shape as the reports say it: ``batch 1, seq 128, 2 threads`` (pure)."""
    t = shape["threads"]
    return f"batch {shape['batch']}, seq {shape['seq']}, {t} thread" + ("" if t == 1 else "s")


def group_key(m: dict) -> tuple:
    return (m["threads"], m["batch"], m["seq"])


def key_of(model: str, variant: str, batch: int, seq: int, threads: int) -> str:
    return f"{model}/{variant}/b{batch}/s{seq}/t{threads}"


def measurement_record(meta: dict, measurement, max_cv: float, budget_mb: float | None) -> dict:
    """One entry of ``measurements``: ``meta`` (model/variant/file facts) + what was measured."""
    c = measurement.config
    rec = {
        "key": key_of(meta["model"], meta["variant"], c.batch, c.seq, c.threads),
        **meta,
        "backend": c.backend, "batch": c.batch, "seq": c.seq, "threads": c.threads, "provider": c.provider,
        "spinning": c.spinning, "graph_optimization": c.graph_optimization, "memory_arena": c.memory_arena,
        "io_binding": c.io_binding, "cpu_affinity": list(c.cpu_affinity) if c.cpu_affinity else None,
        "samples_s": measurement.rounds, "positions": measurement.positions,
        "summary_s": None, "unstable": None, "throughput": None,
        "peak_rss_mb": measurement.peak_rss_mb, "session_rss_mb": measurement.session_rss_mb,
        "session_init_s": measurement.session_init_s, "over_budget": None,
        "speedup": {"vs_full_fp32": None, "vs_torch_eager": None},
        "info": measurement.info, "error": measurement.error,
    }
    if measurement.ok:
        summary = dict(measurement.summary)
        summary["balanced_median"] = stats.balanced_median(measurement.rounds)
        rec["summary_s"] = summary
        rec["unstable"] = stats.is_unstable(summary, max_cv)
        rec["throughput"] = stats.throughput(c.batch, c.seq, summary["mean"])
        if budget_mb is not None and measurement.peak_rss_mb is not None:
            rec["over_budget"] = measurement.peak_rss_mb > budget_mb
    return rec


def add_speedups(records: list[dict], full_depth: int) -> dict:
    """Fill ``speedup`` of every record in place; returns the reference keys used."""
    ref_onnx: dict[tuple, dict] = {}
    ref_torch: dict[tuple, dict] = {}
    for r in records:
        if r["summary_s"] is None or r["depth"] != full_depth:
            continue
        if r["variant"] == "fp32" and r["backend"] == "onnxruntime":
            ref_onnx.setdefault(group_key(r), r)
        elif r["variant"] == TORCH_VARIANT:
            ref_torch.setdefault(group_key(r), r)
    for r in records:
        if r["summary_s"] is None:
            continue
        lat = r["summary_s"]["balanced_median"]
        for name, refs in (("vs_full_fp32", ref_onnx), ("vs_torch_eager", ref_torch)):
            ref = refs.get(group_key(r))
            if ref is not None:
                r["speedup"][name] = stats.speedup(ref["summary_s"]["balanced_median"], lat)
    any_onnx = next(iter(ref_onnx.values()), None)
    any_torch = next(iter(ref_torch.values()), None)
    return {"onnx": f"{any_onnx['model']}/fp32" if any_onnx else None,
            "torch": f"{any_torch['model']}/{TORCH_VARIANT}" if any_torch else None, "depth": full_depth}


def depth_fits(records: list[dict]) -> list[dict]:
    """Linear fit of latency (balanced median) on depth per variant and shape, where >= 3 depths exist."""
    groups: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r["summary_s"] is not None and r["variant"] != TORCH_VARIANT:
            groups[(r["variant"], *group_key(r))].setdefault(r["depth"], r["summary_s"]["balanced_median"])
    fits = []
    for (variant, threads, batch, seq), points in sorted(groups.items(), key=lambda kv: _group_sort(kv[0])):
        if len(points) < 3:
            continue
        depths = sorted(points)
        fit = stats.linear_fit(depths, [points[d] for d in depths])
        fits.append({"variant": variant, "batch": batch, "seq": seq, "threads": threads,
                     "slope_s": fit["slope"], "intercept_s": fit["intercept"], "r2": fit["r2"],
                     "points": {str(d): points[d] for d in depths}})
    return fits


def _group_sort(g: tuple) -> tuple:
    variant, *rest = g
    return (variant_rank(variant), *rest)


def warnings_for(records: list[dict], max_cv: float, budget_mb: float | None) -> list[str]:
    out = []
    for r in records:
        if r["error"]:
            out.append(f"{r['key']}: not measured: {r['error']}")
            continue
        if r["summary_s"] is None:
            continue
        w = stats.spread_warning(r["key"], r["summary_s"], max_cv)
        if w:
            out.append(w)
        if r.get("over_budget"):
            out.append(f"{r['key']}: peak RSS {r['peak_rss_mb']:.0f} MB exceeds the target's memory budget "
                       f"{budget_mb:.0f} MB")
    return out


def build(*, run, target, emulation: dict, settings: dict, host: dict, entries: list[tuple[dict, object]],
          full_depth: int, rounds_done: int, complete: bool, extra_warnings: list[str] | None = None,
          created: str | None = None) -> dict:
    """The whole results document; ``entries`` = [(meta, Measurement), ...]; ``created``: the run's start
    (default now), also each measurement's ``measured_at``."""
    max_cv = settings["max_cv"]
    budget = target.memory_budget_mb
    created = created or now()
    records = [dict(measurement_record(meta, m, max_cv, budget), measured_at=created) for meta, m in entries]
    reference = add_speedups(records, full_depth)
    warnings = list(extra_warnings or []) + warnings_for(records, max_cv, budget)
    return stamp(FORMAT, VERSION, {
        "created": created, "complete": complete, "rounds_done": rounds_done,
        "run": {"path": str(run.path), "task": run.cfg.task, "model": run.cfg.model},
        "target": {**target.to_dict(), **emulation},
        "settings": settings, "host": host, "reference": reference,
        "measurements": records, "depth_fit": depth_fits(records), "warnings": warnings,
    })


def save(path: str | os.PathLike, doc: dict) -> None:
    atomic_write_json(path, doc)


def load(path: str | os.PathLike) -> dict:
    """Read a latency file (refuses other formats and newer versions with a clear RunDirError)."""
    from ..core.shapes import check_latency

    doc = read_versioned(path, FORMAT, VERSION)
    check_latency(doc, path)  # wrong-typed fields: one clear error (exit 2), not a crash in a reader
    return doc


def sort_records(records: list[dict]) -> list[dict]:
    def key(r):
        v = variant_rank(r["variant"])
        return (r["threads"], r["batch"], r["seq"], -r["depth"], r["model"], v)

    return sorted(records, key=key)
