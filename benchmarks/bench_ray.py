#!/usr/bin/env python
"""What the Ray executor costs and gains on this machine, and what it should gain on a GPU cluster.

    python benchmarks/bench_ray.py [--model DIR] [--data-dir DIR] [--min-depth N] [--skip-search] [--json OUT]

Needs Ray (``pip install 'glp-bench[ray]'``). Defaults: the bundled all-MiniLM-L6-v2 on the real CoLA data
in ../shared/data/glue/CoLA. About 10-15 minutes on 2 busy cores. Every figure is a wall time on a shared
machine: read them as orders of magnitude, not to the millisecond.

1. Ray's fixed costs: starting a local instance (``ray.init``, 2 CPUs, dashboard off); the round trip of a
   no-op task (submit + result, one at a time, warm worker; median of 50); the throughput of 400 no-op tasks
   submitted at once.
2. Per-task overhead of a real GLP candidate: one candidate task at a time through ``RayExecutor.score_many``
   (the Workload put in the object store once, ``ray.put`` timed), overhead = task wall time - the fine-tune's
   own ``seconds``; the same through ``LocalExecutor`` (1 torch thread in both). The first Ray task of a job
   also starts its worker process (imports torch): reported apart as "cold".
3. A smoke search end to end (``glp-bench prune --budget smoke --strategy glp``, the real CLI): local executor
   with 1 torch thread, local with the default threads (all cores), Ray (a fresh local instance, 2 tasks of
   1 CPU at once). Checks the Ray run chose the same layers with the same scores and files as local/1 thread.
4. Expected scaling of the Ray executor with G GPUs (pure arithmetic, printed for 12 -> 6 layers on 8 GPUs):
   a GLP step runs its k candidates in ceil(k / G) rounds (a step needs the previous step's choice); a
   candidate or final model costs ~ (its layers + 1) units (embeddings and head ~ one layer); the finals of
   all depths run in ceil(n_finals / G) rounds, each as long as its deepest model. Per-task overhead
   (section 2) is seconds against fine-tunes of minutes, so it is left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_file

REPO = Path(__file__).resolve().parents[1]
FORMAT, VERSION = "glp-bench-ray-bench", 1


def expected_speedup(n_layers: int, min_depth: int, gpus: int, search_examples: float, final_examples: float,
                     n_strategies: int = 1) -> dict:
    """Section 4's model: sequential time / time with ``gpus`` parallel tasks, for the GLP search, the finals
    and both (examples per candidate and per final model weight the two parts). Pure."""
    steps = range(n_layers, min_depth, -1)  # k candidates at the step with k layers left, each with k-1 layers
    seq_search = sum(k * k for k in steps)  # k candidates of cost (k - 1) + 1
    par_search = sum(math.ceil(k / gpus) * k for k in steps)
    depths = [n_layers] + [d for d in range(n_layers - 1, min_depth - 1, -1) for _ in range(n_strategies)]
    seq_final = sum(d + 1 for d in depths)
    rounds = [depths[i:i + gpus] for i in range(0, len(depths), gpus)]  # deepest first, as final_jobs orders them
    par_final = sum(max(r) + 1 for r in rounds)
    seq = seq_search * search_examples + seq_final * final_examples
    par = par_search * search_examples + par_final * final_examples
    n_candidates = sum(steps)
    return {"layers": n_layers, "min_depth": min_depth, "gpus": gpus, "candidates": n_candidates,
            "search_rounds": sum(math.ceil(k / gpus) for k in steps), "finals": len(depths),
            "final_rounds": len(rounds), "search_speedup": round(seq_search / par_search, 2),
            "final_speedup": round(seq_final / par_final, 2), "total_speedup": round(seq / par, 2)}


def ray_fixed_costs() -> dict:
    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    start = time.perf_counter() - t0

    @ray.remote(num_cpus=1)
    def noop():
        return None

    ray.get([noop.remote() for _ in range(10)])  # start and warm the workers
    trips = []
    for _ in range(50):
        t = time.perf_counter()
        ray.get(noop.remote())
        trips.append(time.perf_counter() - t)
    t = time.perf_counter()
    ray.get([noop.remote() for _ in range(400)])
    rate = 400 / (time.perf_counter() - t)
    return {"ray_init_s": round(start, 2), "noop_round_trip_ms_median": round(1000 * statistics.median(trips), 2),
            "noop_tasks_per_s": round(rate, 1)}


def per_task_overhead(model: str, data_dir: str, n: int = 4) -> dict:
    import torch

    from glp_bench.commands._common import quiet_hf
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.executors import ExecutorSpec, LocalExecutor
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.ray_executor import RayExecutor
    from glp_bench.prune.stage import Pruner

    quiet_hf()
    torch.set_num_threads(1)
    plan = make_plan("cola", model, data_dir, ["glp"], "smoke", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        pruner = Pruner(plan, RunDir(Path(tmp) / "run"))
        cands = pruner.layers[:n]
        out = {}
        for name, make in (("local", lambda: LocalExecutor("cpu")), ("ray", lambda: RayExecutor(ExecutorSpec("ray"), "cpu"))):
            with make() as ex:
                t = time.perf_counter()
                ex.load(pruner)
                load = time.perf_counter() - t
                over = []
                for c in cands:
                    t = time.perf_counter()
                    (_, rec), = ex.score_many((), [c])
                    over.append(time.perf_counter() - t - rec["seconds"])
                out[name] = {"load_s": round(load, 3), "cold_overhead_s": round(over[0], 3),
                             "warm_overhead_s_median": round(statistics.median(over[1:]), 3),
                             "fine_tune_s_last": rec["seconds"]}
    return out


def smoke_search(model: str, data_dir: str, min_depth: int | None, work: Path) -> dict:
    base = [sys.executable, "-m", "glp_bench.cli", "prune", "--task", "cola", "--model", model, "--data-dir", data_dir,
            "--budget", "smoke", "--strategy", "glp", "--device", "cpu"]
    if min_depth is not None:
        base += ["--min-depth", str(min_depth)]
    runs = {"local_1_thread": ([], {"OMP_NUM_THREADS": "1"}), "local_default_threads": ([], {}),
            "ray": (["--executor", "ray"], {})}
    out = {}
    for name, (extra, env) in runs.items():
        t = time.perf_counter()
        proc = subprocess.run([*base, "--run", str(work / name), *extra], capture_output=True, text=True,
                              env={**os.environ, **env})
        wall = time.perf_counter() - t
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        m = json.loads((work / name / "manifest.json").read_text())
        cands = [c for s in m["strategies"]["glp"]["steps"] for c in s["candidates"].values()]
        out[name] = {"wall_s": round(wall, 1), "order": m["strategies"]["glp"]["order"],
                     "fine_tune_s_sum": round(sum(c["seconds"] for c in cands), 1), "candidates": len(cands),
                     "_manifest": m}

    def results(m):
        steps = [{k: (v["score"], v["loss"]) for k, v in s["candidates"].items()} for s in m["strategies"]["glp"]["steps"]]
        return steps, m["strategies"]["glp"]["order"], {n: (r["dev_scores"], r["files"]) for n, r in m["models"].items()}

    ref = results(out["local_1_thread"]["_manifest"])
    out["ray_equals_local_1_thread"] = results(out["ray"]["_manifest"]) == ref
    out["local_default_threads_equals_local_1_thread"] = results(out["local_default_threads"]["_manifest"]) == ref
    for name in runs:
        del out[name]["_manifest"]
    out["speedup_ray_vs_local_default"] = round(out["local_default_threads"]["wall_s"] / out["ray"]["wall_s"], 2)
    out["speedup_ray_vs_local_1_thread"] = round(out["local_1_thread"]["wall_s"] / out["ray"]["wall_s"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled all-MiniLM-L6-v2)")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue" / "CoLA"))
    ap.add_argument("--min-depth", type=int, default=None, help="of the smoke search (default: half the depth)")
    ap.add_argument("--skip-search", action="store_true", help="sections 1, 2 and 4 only")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()
    results_file.check(ap, args.json, "--json", FORMAT)

    import ray

    from glp_bench.prune.models import resolve_model

    model = resolve_model(args.model)
    report = {"machine": {"cpus": os.cpu_count(), "ray": ray.__version__}, "model": model}
    report["fixed_costs"] = ray_fixed_costs()
    print("1. Ray fixed costs:", json.dumps(report["fixed_costs"]), flush=True)
    report["per_task"] = per_task_overhead(model, args.data_dir)
    ray.shutdown()
    print("2. per-task overhead of a GLP candidate (s):", json.dumps(report["per_task"]), flush=True)
    if not args.skip_search:
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            report["smoke_search"] = smoke_search(model, args.data_dir, args.min_depth, Path(tmp))
        print("3. smoke search:", json.dumps(report["smoke_search"]), flush=True)
    # paper budget: a candidate trains on 85% of train, a final model on all of it, the same epochs
    report["expected"] = [expected_speedup(12, 6, g, 0.85, 1.0) for g in (2, 4, 8, 12)]
    print("4. expected speedup, 12 -> 6 layers, paper budget, GLP only:")
    for e in report["expected"]:
        print(f"   {e['gpus']:2d} GPUs: {e['candidates']} candidates in {e['search_rounds']} rounds "
              f"(search x{e['search_speedup']}), {e['finals']} finals in {e['final_rounds']} round(s) "
              f"(x{e['final_speedup']}), total x{e['total_speedup']}")
    if args.json:
        results_file.write(args.json, FORMAT, VERSION, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
