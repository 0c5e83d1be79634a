"""A new latency run meets the results file already there: its measurements are merged in, never dropped
without a word. Like pyperf, results of another machine or set-up are refused instead of mixed.

* refused (:func:`differences`): the file was measured on another CPU, core count, ONNX Runtime or torch
  version, or with other session settings of the target (spinning, arena, graph optimization, ...);
* replaced: a configuration (same key: model/variant/batch/seq/threads) measured again, once the new
  measurement has as many rounds as the old one or the new run is complete, unless the new one failed
  and the old one is good (then the old one is kept);
* dropped: a measurement of a file re-exported since (its sha256 differs from the run manifest's);
* kept: every other earlier measurement, with its own speedups (computed in its own interleaved rounds).

Each measurement carries ``measured_at`` (the ``created`` of the run that measured it); ``earlier_runs``
lists the earlier runs that still have measurements in the file, ``merge`` what this run kept/replaced.
"""

from __future__ import annotations

from . import results

MACHINE_FACTS = ("machine", "cpu_model", "physical_cores", "logical_cores")
PACKAGES = ("onnxruntime", "onnxruntime-gpu", "torch")
SESSION_FIELDS = ("name", "device", "tensorrt", "inter_op_threads", "spinning", "memory_arena", "graph_optimization",
                  "pin_cpus", "io_binding")


def facts(doc: dict) -> dict:
    """What must be equal for two latency documents to share a file."""
    env = doc.get("environment") or {}
    target = doc.get("target") or {}
    out = {k: env.get(k) for k in MACHINE_FACTS}
    out.update({p: (env.get("packages") or {}).get(p) for p in PACKAGES})
    out.update({f"target {k}": target.get(k) for k in SESSION_FIELDS})
    return out


def differences(old: dict, new: dict) -> list[str]:
    """The facts that differ between two documents, as ``name: 'old' in the file, 'new' now``."""
    a, b = facts(old), facts(new)
    return [f"{k}: {a[k]!r} in the file, {b[k]!r} now" for k in a if a[k] != b[k]]


def _good(r: dict) -> bool:
    return r.get("summary_s") is not None and not r.get("error")


def combine(old: dict, new: dict, current_sha: dict[tuple[str, str], str | None]) -> tuple[dict, dict]:
    """(merged document, summary): ``new`` (this run's document, possibly partial) merged into ``old``.
    ``current_sha``: {(model, variant): sha256 in the run manifest now}. ``summary``: {"kept", "replaced",
    "kept_over_failed", "dropped_stale"}: lists of keys."""
    created = new.get("created")
    new_records = [dict(r, measured_at=r.get("measured_at") or created) for r in new["measurements"]]
    new_by_key = {r["key"]: r for r in new_records}
    summary: dict[str, list[str]] = {"kept": [], "replaced": [], "kept_over_failed": [], "dropped_stale": []}
    kept: list[dict] = []
    for r in old.get("measurements", []):
        r = dict(r, measured_at=r.get("measured_at") or old.get("created"))
        fresh = new_by_key.get(r["key"])
        if fresh is not None:
            if _good(r) and not _good(fresh) and fresh.get("error"):
                summary["kept_over_failed"].append(r["key"])
                new_by_key[r["key"]] = r
            elif _good(r) and not new.get("complete") and len(fresh["samples_s"]) < len(r.get("samples_s") or []):
                new_by_key[r["key"]] = r  # this run has not caught up yet: the earlier one stays meanwhile
                summary["kept"].append(r["key"])
            else:
                summary["replaced"].append(r["key"])
            continue
        sha = current_sha.get((r["model"], r["variant"]))
        if r.get("sha256") and sha and r["sha256"] != sha:
            summary["dropped_stale"].append(r["key"])
            continue
        summary["kept"].append(r["key"])
        kept.append(r)
    records = [new_by_key[r["key"]] for r in new_records] + kept
    runs_left = {r["measured_at"] for r in records} - {created}
    earlier = [run for run in old.get("earlier_runs", []) if run.get("created") in runs_left]
    if old.get("created") in runs_left and all(run.get("created") != old.get("created") for run in earlier):
        earlier.append({"created": old.get("created"), "complete": old.get("complete", True),
                        "rounds_done": old.get("rounds_done"), "settings": old.get("settings")})
    max_cv = (old.get("settings") or {}).get("max_cv", (new.get("settings") or {}).get("max_cv", 0.10))
    budget = (new.get("target") or {}).get("memory_budget_mb")
    carried = [r for r in records if r["measured_at"] != created]
    doc = dict(new, measurements=records, depth_fit=results.depth_fits(records), earlier_runs=earlier,
               warnings=list(new.get("warnings", [])) + [f"{w} (measured {old.get('created')})"
                                                           for w in results.warnings_for(carried, max_cv, budget)],
               merge={"from": old.get("created"), **{k: len(v) for k, v in summary.items()}})
    if doc.get("reference", {}).get("onnx") is None and old.get("reference"):
        doc["reference"] = old["reference"]
    return doc, summary


def describe(summary: dict, old_created: str | None) -> list[str]:
    """One line per non-empty part of the summary, for the console."""
    since = f" of the earlier run ({old_created})" if old_created else ""
    lines = []
    if summary["kept"]:
        lines.append(f"kept {len(summary['kept'])} earlier measurement(s){since} not measured again")
    if summary["replaced"]:
        lines.append(f"replaced {len(summary['replaced'])} earlier measurement(s) measured again now")
    if summary["kept_over_failed"]:
        lines.append(f"kept {len(summary['kept_over_failed'])} earlier good measurement(s) whose new measurement "
                     f"failed: {', '.join(summary['kept_over_failed'][:3])}")
    if summary["dropped_stale"]:
        lines.append(f"dropped {len(summary['dropped_stale'])} earlier measurement(s) of files re-exported since: "
                     f"{', '.join(summary['dropped_stale'][:3])}")
    return lines
