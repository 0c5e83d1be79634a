#!/usr/bin/env python
"""The project's score suite, run in CI next to the inference-time suite (`tox -e bench`, called by `.ci/run`).

    python benchmarks/score_suite.py [--json OUT]

Does this checkout's score gate (``glp-bench gate --scores``) still give the known answers on the checked-in
tiny model pair (``benchmarks/score_pair/``, remade by ``benchmarks/score_pair.py``)? Each check is the real
CLI in a subprocess, its exit status compared with the answer:

* ``good.onnx`` vs ``worse.onnx`` (the same model with its classifier weights zeroed): regression, exit 1;
* ``good.onnx`` vs ``good.onnx``: no regression, exit 0;
* ``worse.onnx`` vs ``good.onnx`` (an improvement): no regression, exit 0.

A scorer, tokenizer or decision bug that hides a regression, or one that fails a model against itself, fails
the suite. Exit status 0 when every check gives its answer, 1 otherwise. About 30 s of CPU time (3 CLI runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_file

FORMAT, VERSION = "glp-bench-score-suite", 1
REPO = Path(__file__).resolve().parents[1]
PAIR = REPO / "benchmarks" / "score_pair"
CHECKS = (("worse model fails", "good.onnx", "worse.onnx", 1),
          ("same model passes", "good.onnx", "good.onnx", 0),
          ("better model passes", "worse.onnx", "good.onnx", 0))


def run_check(name: str, base: str, cand: str, want: int, folder: Path) -> dict:
    out = folder / f"{base}-{cand}.json"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "glp_bench.cli", "gate", "--scores", str(PAIR / base), str(PAIR / cand),
                           "--task", str(PAIR / "task.toml"), "--json", str(out)], capture_output=True, text=True,
                          timeout=600)
    doc = json.loads(out.read_text()) if out.is_file() else {}
    d = doc.get("decision") or {}
    detail = (f"{base} vs {cand}: exit {proc.returncode} (want {want}); " + (
        f"{d['metric']} {d['baseline']:.3f} -> {d['candidate']:.3f}, {d['delta']:+.1f} points, CI "
        f"[{d['lo']:+.1f}, {d['hi']:+.1f}]" if d.get("lo") is not None else (proc.stderr.strip().splitlines() or ["-"])[-1]))
    return {"check": name, "ok": proc.returncode == want, "exit": proc.returncode, "want": want, "detail": detail,
            "seconds": time.perf_counter() - t0, "document": doc}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write every check to this file")
    args = p.parse_args(argv)
    results_file.check(p, args.json, "--json", FORMAT)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="glp-bench-score-suite-") as tmp:
        checks = []
        for name, base, cand, want in CHECKS:
            checks.append(run_check(name, base, cand, want, Path(tmp)))
            c = checks[-1]
            print(f"{'pass' if c['ok'] else 'FAIL'}  {name}: {c['detail']} ({c['seconds']:.0f} s)", flush=True)
    failed = [c for c in checks if not c["ok"]]
    seconds = time.perf_counter() - t0
    if args.json:
        results_file.write(args.json, FORMAT, VERSION, {"seconds": seconds, "checks": checks})
    print(f"score suite: {'FAIL' if failed else 'PASS'} ({len(checks) - len(failed)} of {len(checks)} checks ok, "
          f"{seconds:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
