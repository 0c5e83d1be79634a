#!/usr/bin/env python
"""Proof of `glp-bench gate`: it flags a ~15% slowdown and leaves identical models alone.

    python benchmarks/bench_gate.py [--runs 20] [--depth 6] [--rounds 8] [--min-time 0.25] [--min-runs 5]
                                    [--work DIR] [--json OUT]

Models (built once, through glp-bench's own surgery and export code; ``--work DIR`` keeps them):
all-MiniLM-L6-v2 cut to ``--depth`` encoder layers (the baseline), the same with one extra encoder layer
(the injected slowdown: one layer more out of depth + 1, about 1/(depth + 1) of the encoder's work), and
a byte-identical copy of the baseline in another folder.

Each run is one real ``glp-bench gate BASELINE CANDIDATE`` subprocess (batch 1, seq 128, 1 thread), with
``--structure report`` so that *only the timing decision* counts: the structural check would catch the
extra layer deterministically and make the test trivial. Slowdown runs and identical runs alternate, so a
busy spell of the machine hits both kinds alike. Goals: the slowdown is flagged (exit 1) in at least 95% of
runs (19 of 20), identical models in at most 5% (1 of 20). Prints every run (exit status, ratio, p-value,
wall time), the counts and the wall time per run; exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_file
from gate_models import REPO, copy_export, export_depth, log

FORMAT, VERSION = "glp-bench-gate-bench", 1


def gate_run(base: Path, cand: Path, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "glp_bench.cli", "gate", str(base), str(cand), "--structure", "report",
           "--rounds", str(args.rounds), "--min-time", str(args.min_time), "--min-runs", str(args.min_runs),
           "--factor", str(args.factor), "--json", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "COLUMNS": "120", "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    rec = {"exit": proc.returncode, "wall_s": wall, "ratio": None, "p_slower": None, "passes": None, "status": None}
    if out.is_file():
        doc = json.loads(out.read_text())
        t = doc["timing"]
        rec.update(ratio=t["ratio"], p_slower=t["p_slower"], passes=len(doc["passes"]), status=t["status"])
    if proc.returncode not in (0, 1):
        rec["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="gate runs of each kind (default 20)")
    p.add_argument("--depth", type=int, default=6, help="encoder layers of the baseline (default 6; candidate +1)")
    p.add_argument("--rounds", type=int, default=8, help="gate --rounds (default 8: the fast setting)")
    p.add_argument("--min-time", type=float, default=0.25, help="gate --min-time (default 0.25 s)")
    p.add_argument("--min-runs", type=int, default=5, help="gate --min-runs (default 5)")
    p.add_argument("--factor", type=float, default=1.10, help="gate --factor (default 1.10)")
    p.add_argument("--work", default=None, help="folder for the models and the gate JSON files (kept)")
    p.add_argument("--json", default=None, help="write every run and the figures to this file")
    args = p.parse_args(argv)
    results_file.check(p, args.json, "--json", FORMAT)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="glp-bench-gate-"))
    work.mkdir(parents=True, exist_ok=True)
    base = export_depth(work / f"depth-{args.depth:02d}", args.depth)
    slow = export_depth(work / f"depth-{args.depth:02d}-plus1", args.depth, extra_layers=1)
    same = copy_export(base, work / f"depth-{args.depth:02d}-copy")
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    runs = {"slowdown": [], "identical": []}
    for i in range(args.runs):
        kinds = ("slowdown", "identical") if i % 2 == 0 else ("identical", "slowdown")
        for kind in kinds:
            cand = slow if kind == "slowdown" else same
            rec = gate_run(base, cand, work / f"gate-{kind}-{i:02d}.json", args)
            rec["load1"] = os.getloadavg()[0]
            runs[kind].append(rec)
            ratio = "-" if rec["ratio"] is None else f"{rec['ratio']:.3f}"
            p_s = "-" if rec["p_slower"] is None else f"{rec['p_slower']:.2g}"
            log(f"run {i + 1:2d} {kind:9s}: exit {rec['exit']} ({rec['status']}), ratio {ratio}, p slower {p_s}, "
                f"{rec['passes']} pass(es), {rec['wall_s']:.1f} s, load {rec['load1']:.1f}"
                + (f"  [{rec['error']}]" if rec.get("error") else ""))
    total = time.perf_counter() - t_start
    load_after = os.getloadavg()

    flagged = sum(r["exit"] == 1 for r in runs["slowdown"])
    false = sum(r["exit"] == 1 for r in runs["identical"])
    undecided = sum(r["exit"] not in (0, 1) for rs in runs.values() for r in rs)
    walls = {k: [r["wall_s"] for r in rs] for k, rs in runs.items()}
    ratios = [r["ratio"] for r in runs["slowdown"] if r["ratio"]]
    ok_power = flagged >= 0.95 * args.runs
    ok_false = false <= 0.05 * args.runs
    print()
    print(f"glp-bench gate proof: all-MiniLM-L6-v2 depth {args.depth} vs depth {args.depth + 1} (slowdown) and vs an "
          f"identical copy; batch 1, seq 128, 1 thread; gate --rounds {args.rounds} --min-time {args.min_time} "
          f"--min-runs {args.min_runs} --factor {args.factor} --structure report")
    print(f"  {'PASS' if ok_power else 'FAIL'}  slowdown flagged   {flagged}/{args.runs}   (goal >= 95%)"
          f"   measured ratio median {statistics.median(ratios):.3f} [min {min(ratios):.3f}, max {max(ratios):.3f}]"
          if ratios else f"  FAIL  slowdown flagged   {flagged}/{args.runs}")
    print(f"  {'PASS' if ok_false else 'FAIL'}  identical flagged  {false}/{args.runs}   (goal <= 5%)")
    if undecided:
        print(f"  note: {undecided} run(s) undecided (exit 2)")
    for kind, w in walls.items():
        print(f"  wall time per {kind} run: median {statistics.median(w):.1f} s, max {max(w):.1f} s")
    print(f"  total {total / 60:.1f} min; load average (1 min) {load_before[0]:.1f} -> {load_after[0]:.1f} on "
          f"{os.cpu_count()} CPUs" + (" (busy machine: timings are noisy)" if max(load_before[0], load_after[0]) > 1 else ""))
    print(f"{int(ok_power) + int(ok_false)} passed, {2 - int(ok_power) - int(ok_false)} failed")
    if args.json:
        results_file.write(args.json, FORMAT, VERSION, {
            "settings": vars(args), "runs": runs, "flagged": flagged, "false_positives": false,
            "undecided": undecided, "total_s": total, "load_before": load_before, "load_after": load_after,
        })
    return 0 if ok_power and ok_false else 1


if __name__ == "__main__":
    sys.exit(main())
