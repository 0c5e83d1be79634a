"""Issue-14 benchmark (not a test): which pooling should the classifier read? Measured on the train split only.

The default model (all-MiniLM-L6-v2) was pre-trained with mean pooling; Hugging Face's classifier reads the first
token. On real CoLA, the full-depth model is fine-tuned on the seeded 85% part of train (the search split) with
``--pooling cls`` and ``--pooling mean`` (``glp_bench.prune.pooling``), the auto recipe's learning rate and
warm-up (``--lr``, default 1e-4: the main job's sweep winner) and 3 epochs, ``--seeds`` seeds each, and scored
on the held-out 15%. The dev split is never used. Results go to ``--out`` as they finish (versioned, atomic; an
interrupted benchmark resumes). Prints per seed and the means; exits 0 (a benchmark reports, it does not gate).

    python benchmarks/bench_pooling_heldout.py [--seeds 2] [--lr 1e-4] [--out runs/bench-pooling-heldout.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import results_file

FORMAT, VERSION = "glp-bench-bench-pooling-heldout", 1
POOLINGS = ("cls", "mean")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=2, help="seeds per pooling (default 2)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4, the main job's sweep winner)")
    p.add_argument("--out", default="runs/bench-pooling-heldout.json", help="results file")
    args = p.parse_args()
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    results_file.check(p, args.out, "--out", FORMAT)

    from glp_bench.commands._common import quiet_hf
    from glp_bench.core.jsonio import atomic_write_json, environment, read_versioned
    from glp_bench.core.rundir import RunDir
    from glp_bench.data.resolve import get_task
    from glp_bench.prune.models import resolve_model
    from glp_bench.prune.plan import AUTO_WARMUP, make_plan
    from glp_bench.prune.pooling import set_pooling
    from glp_bench.prune.precision import resolve_precision
    from glp_bench.prune.stage import Pruner
    from glp_bench.prune.train import fine_tune, predict

    quiet_hf()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = read_versioned(out, FORMAT, VERSION) if out.is_file() else {"format": FORMAT, "version": VERSION, "results": {}}
    doc["environment"] = environment()
    results = doc["results"]
    model = resolve_model(None)
    plan = make_plan("cola", model, None, ["glp"], "fast", 42, None, "cpu", precision="auto", pooling="cls")
    work = Pruner(plan, RunDir(out.parent / ".bench-pooling-unused")).work  # data, tokenizer, base; nothing written
    cfg = replace(work.final_config, lr=args.lr, warmup_ratio=AUTO_WARMUP, max_samples=None, distill_alpha=0.0,
                  precision=resolve_precision("auto", "cpu"))
    task = get_task("cola")
    seeds = [42 + i for i in range(args.seeds)]
    for pooling in POOLINGS:
        set_pooling(work.base, pooling)
        for seed in seeds:
            k = f"{pooling} | lr {args.lr:g} | seed {seed}"
            if k not in results:
                m = work.model_without([], seed)
                t0 = time.perf_counter()
                fine_tune(m, work.fit, work.tokenizer, replace(cfg, seed=seed), "cpu")
                logits = predict(m, work.held, work.tokenizer, "cpu")
                results[k] = {"score": task.compute(logits, work.held["labels"])[task.main_metric],
                              "loss": task.loss(logits, work.held["labels"]), "seconds": round(time.perf_counter() - t0, 1)}
                atomic_write_json(out, doc)
            print(f"{k}: held-out MCC {results[k]['score']:.4f}, loss {results[k]['loss']:.4f} "
                  f"({results[k]['seconds']:.0f} s)", flush=True)
    print(f"\nfull-depth {model} on the 85/15 split of CoLA train, lr {args.lr:g}, seeds {seeds}:")
    for pooling in POOLINGS:
        vals = [results[f"{pooling} | lr {args.lr:g} | seed {s}"]["score"] for s in seeds]
        print(f"  {pooling:5s} held-out MCC {statistics.fmean(vals):.4f} ({' / '.join(f'{v:.4f}' for v in vals)})")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
