"""Where the main job's time goes: its stages (recipe sweep, GLP candidates per step, finals per model, export
per model and part) in one run, as a table and versioned JSON.

    python benchmarks/bench_main_job.py                       # runs 'glp-bench prune-and-export --task cola'
    python benchmarks/bench_main_job.py --run runs/X --reuse  # tabulates a finished run, runs nothing

Run it alone (no tests, no other benchmark: 2 cores). The job runs in a subprocess with its wall time measured;
the per-stage seconds come from the run's own records (``seconds`` of every sweep point and candidate, the
finals' ``train.seconds``, export's ``seconds`` per variant: build, validate, score), so prune and export are
split without instrumenting them. "other" is the wall time no record accounts for (loading, tokenizing,
the int8 candidate timing inside the int8 build, the full-depth calibration, process start-up). With successive
halving, the candidate compute saved (budgets not trained) comes from the same records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import results_file

FORMAT, VERSION = "glp-bench-main-job", 1


def stage_rows(manifest: dict) -> list[dict]:
    """``[{"stage", "part", "count", "seconds"}]`` from a run's manifest (pure)."""
    rows = []
    points = ((manifest.get("recipe") or {}).get("points") or {}).values()
    if points:
        rows.append({"stage": "prune", "part": "recipe sweep", "count": len(points),
                     "seconds": sum(float(p.get("seconds") or 0) for p in points)})
    for i, step in enumerate(((manifest.get("strategies") or {}).get("glp") or {}).get("steps", []), 1):
        cands = list((step.get("candidates") or {}).values())
        rescored = list(((step.get("rescore") or {}).get("candidates") or {}).values())
        rows.append({"stage": "prune", "part": f"GLP step {i} candidates", "count": len(cands) + len(rescored),
                     "seconds": sum(float(c.get("seconds") or 0) for c in cands + rescored)})
    for name, rec in sorted((manifest.get("models") or {}).items(), key=lambda kv: -kv[1].get("depth", 0)):
        seeds = (rec.get("seeds") or {}).values()
        secs = sum(float((s.get("train") or {}).get("seconds") or 0) for s in seeds) or \
            float((rec.get("train") or {}).get("seconds") or 0)
        if secs:
            rows.append({"stage": "prune", "part": f"final {name} ({'+'.join(rec.get('strategies') or [])})",
                         "count": max(1, len(seeds)), "seconds": secs})
    for name, rec in sorted((manifest.get("models") or {}).items(), key=lambda kv: -kv[1].get("depth", 0)):
        for variant, v in (rec.get("onnx") or {}).items():
            for part, s in (v.get("seconds") or {}).items():
                rows.append({"stage": "export", "part": f"{name} {variant} {part}", "count": 1, "seconds": float(s)})
    return rows


def halving_compute(manifest: dict) -> dict | None:
    """GLP candidate compute in whole-budget fine-tunes: ``{"trained", "full", "saved"}`` (``saved``: the share
    successive halving did not train); None when no step was halved (pure)."""
    from fractions import Fraction

    trained = full = 0.0
    halved = False
    for step in ((manifest.get("strategies") or {}).get("glp") or {}).get("steps", []):
        halved |= "halving" in step
        for rec in (step.get("candidates") or {}).values():
            full += 1
            at = rec.get("stopped_at")
            trained += float(Fraction(at)) if at else 1.0
    if not halved or not full:
        return None
    return {"trained": round(trained, 3), "full": full, "saved": round(1 - trained / full, 4)}


def summary(rows: list[dict], wall: dict[str, float] | None) -> list[dict]:
    """Totals per stage and kind of work, plus "other" per stage when the wall time is known."""
    kinds: dict[tuple[str, str], float] = {}
    for r in rows:
        part = r["part"]
        kind = ("recipe sweep" if part == "recipe sweep" else "GLP candidates" if part.startswith("GLP")
                else "finals" if part.startswith("final") else part.rsplit(" ", 1)[-1] if r["stage"] == "export"
                else part)
        if r["stage"] == "export":
            kind = f"{part.split(' ')[1]} {kind}"
        kinds[(r["stage"], kind)] = kinds.get((r["stage"], kind), 0.0) + r["seconds"]
    out = [{"stage": s, "kind": k, "seconds": v} for (s, k), v in kinds.items()]
    for stage, total in (wall or {}).items():
        known = sum(v for (s, _), v in kinds.items() if s == stage)
        out.append({"stage": stage, "kind": "other (unrecorded)", "seconds": max(total - known, 0.0)})
    return out


def run_job(run_dir: Path, extra: list[str]) -> dict[str, float]:
    """Run prune then export (what prune-and-export does), each timed by its wall clock."""
    wall = {}
    for stage, argv in (("prune", ["prune", "--task", "cola", "--run", str(run_dir), *extra]),
                        ("export", ["export", "--run", str(run_dir)])):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "glp_bench.cli", *argv], check=True)
        wall[stage] = time.perf_counter() - t0
    return wall


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/bench-main-job", help="the run directory (default %(default)s)")
    ap.add_argument("--reuse", action="store_true", help="tabulate the finished run in --run; run nothing")
    ap.add_argument("--out", default="bench-main-job.json", help="JSON results file (default %(default)s)")
    ap.add_argument("extra", nargs="*", help="more prune options after --, e.g. -- --strategy glp")
    args = ap.parse_args(argv)
    out = results_file.check(ap, args.out, "--out", FORMAT)
    run_dir = Path(args.run)
    wall = None
    if not args.reuse:
        if (run_dir / "manifest.json").exists():
            ap.error(f"{run_dir} holds a run already: pass --reuse to tabulate it, or another --run")
        wall = run_job(run_dir, args.extra)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = stage_rows(manifest)
    totals = summary(rows, wall)
    console = Console()
    table = Table(title=f"main job stages ({run_dir}; seconds from the run's records"
                  + (", wall per stage measured)" if wall else ", no wall time: --reuse)"))
    for col in ("stage", "work", "seconds", "share"):
        table.add_column(col, justify="right" if col in ("seconds", "share") else "left")
    whole = sum(t["seconds"] for t in totals) or 1.0
    for t in sorted(totals, key=lambda t: (t["stage"] != "prune", -t["seconds"])):
        table.add_row(t["stage"], t["kind"], f"{t['seconds']:.1f}", f"{t['seconds'] / whole:.0%}")
    console.print(table)
    if wall:
        console.print(f"wall: prune {wall['prune'] / 60:.1f} min, export {wall['export'] / 60:.1f} min, "
                      f"total {sum(wall.values()) / 60:.1f} min")
    halving = halving_compute(manifest)
    if halving:
        console.print(f"successive halving: {halving['trained']:g} of {halving['full']:g} candidate budgets trained, "
                      f"{halving['saved']:.0%} of the candidate compute saved")
    results_file.write(out, FORMAT, VERSION, {"run": str(run_dir), "wall_seconds": wall, "parts": rows,
                                             "totals": totals, "halving": halving})
    return 0


if __name__ == "__main__":
    sys.exit(main())
