"""Issue-15 speed benchmark: bf16 autocast vs fp32 fine-tuning of the default model on real CoLA.

Same machine, same run, alternating precisions seed by seed: each seed fine-tunes the full-depth default model
(all-MiniLM-L6-v2) on CoLA's train split with glp-bench's loop (the run's auto recipe: lr 1e-4, 10% warm-up,
unless ``--lr``) in fp32 and in bf16, and scores it on dev (always in fp32). Prints examples/s of both, their
ratio (target >= 1.5x), each precision's dev MCC per seed, and whether the bf16 mean lies within the fp32
seed-to-seed spread (min..max over seeds, widened to mean +- 1 std when that is wider).

    python benchmarks/bench_finetune_precision.py [--seeds 2] [--epochs 3] [--samples N]

Exits 1 when the CPU has no bf16 support (nothing to compare), else 0 (a benchmark reports; it does not gate).
"""

from __future__ import annotations

import argparse
import statistics
import sys

TARGET = 1.5


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="CoLA folder (default: the bundled copy)")
    p.add_argument("--model", default=None)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--samples", type=int, default=None, help="training examples per fine-tune (default: all)")
    args = p.parse_args()

    from glp_bench.commands._common import quiet_hf
    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task
    from glp_bench.prune.models import load_classifier, load_tokenizer, resolve_model
    from glp_bench.prune.precision import device_caps
    from glp_bench.prune.train import TrainConfig, evaluate, fine_tune, tokenize

    quiet_hf()
    caps = device_caps("cpu")
    if not caps["bf16"]:
        print(f"this CPU ({caps['name']}) has no bf16 support: nothing to compare")
        return 1
    task = get_task("cola")
    model_id = resolve_model(args.model)
    tok = load_tokenizer(model_id)
    data = load_task_data(task, args.data_dir)
    train, dev = tokenize(data["train"], tok, task), {"validation": tokenize(data["validation"], tok, task)}
    out = {"fp32": [], "bf16": []}
    for seed in range(42, 42 + args.seeds):
        for precision in ("fp32", "bf16"):
            model = load_classifier(model_id, task, seed=seed)
            cfg = TrainConfig(epochs=args.epochs, lr=args.lr, warmup_ratio=0.1, seed=seed, precision=precision,
                              max_samples=args.samples)
            st = fine_tune(model, train, tok, cfg, "cpu")
            mcc = evaluate(model, dev, tok, task)["validation"]["matthews_correlation"]
            out[precision].append((st["steady_examples_per_s"], mcc, st["seconds"]))
            print(f"seed {seed} {precision}: {st['steady_examples_per_s']:6.1f} examples/s, {st['seconds']:6.1f} s, "
                  f"dev MCC {mcc:.4f}", flush=True)
    speed = {k: statistics.fmean(x[0] for x in v) for k, v in out.items()}
    mcc = {k: [x[1] for x in v] for k, v in out.items()}
    ratio = speed["bf16"] / speed["fp32"]
    m32, m16 = statistics.fmean(mcc["fp32"]), statistics.fmean(mcc["bf16"])
    sd = statistics.stdev(mcc["fp32"]) if len(mcc["fp32"]) > 1 else 0.0
    lo, hi = min(min(mcc["fp32"]), m32 - sd), max(max(mcc["fp32"]), m32 + sd)
    print(f"\nCPU {caps['name']}; {args.seeds} seeds x {args.epochs:g} epochs at lr {args.lr:g}")
    print(f"fp32 {speed['fp32']:.1f} examples/s, bf16 {speed['bf16']:.1f} examples/s: {ratio:.2f}x (target >= "
          f"{TARGET}x) {'PASS' if ratio >= TARGET else 'MISS'}")
    print(f"dev MCC fp32 {' '.join(f'{v:.4f}' for v in mcc['fp32'])} (mean {m32:.4f}, spread {lo:.4f}..{hi:.4f}); "
          f"bf16 {' '.join(f'{v:.4f}' for v in mcc['bf16'])} (mean {m16:.4f}): "
          f"{'within' if lo <= m16 <= hi else 'OUTSIDE'} the fp32 spread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
