"""Issue-2 speed benchmark: glp-bench's fine-tuning loop vs the paper's padding to 128 tokens.

One epoch of fine-tuning the default model (all-MiniLM-L6-v2) on CoLA's train split, same machine, same run,
same seed: (a) glp-bench's loop (dynamic padding + length-grouped batches), (b) every example padded to 128
tokens as in the paper's protocol. Prints both throughputs (examples/s) and the ratio; exits 1 if the ratio
is below the target (3x).

    python benchmarks/bench_finetune_padding.py [--data-dir ../shared/data/glue/CoLA] [--samples N]

``--samples`` limits the epoch to N examples (same N for both) for a quick check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TARGET = 3.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/glue/CoLA"))
    p.add_argument("--model", default=None)
    p.add_argument("--samples", type=int, default=None, help="examples per epoch (default: all of CoLA train)")
    args = p.parse_args()

    import datasets
    import transformers

    from glp_bench.core.progress import make_progress
    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task
    from glp_bench.prune.models import load_classifier, load_tokenizer, resolve_model
    from glp_bench.prune.train import TrainConfig, fine_tune, tokenize

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    task = get_task("cola")
    model_id = resolve_model(args.model)
    train = tokenize(load_task_data(task, args.data_dir)["train"], load_tokenizer(model_id), task)
    tok = load_tokenizer(model_id)
    results = {}
    with make_progress() as progress:
        for label, pad in (("glp-bench (dynamic padding, length-grouped)", False), ("paper protocol (pad to 128)", True)):
            model = load_classifier(model_id, task, seed=42)
            cfg = TrainConfig(epochs=1, seed=42, pad_to_max=pad, max_samples=args.samples)
            results[label] = fine_tune(model, train, tok, cfg, "cpu", progress, description=label)
    (fast, a), (slow, b) = results.items()
    ratio = a["examples_per_s"] / b["examples_per_s"]
    for label, r in results.items():
        print(f"{label:45s} {r['examples']:6d} examples in {r['seconds']:7.1f} s = {r['examples_per_s']:7.1f} examples/s")
    print(f"speedup of glp-bench's loop over padding to 128: {ratio:.2f}x (target >= {TARGET}x): "
          + ("PASS" if ratio >= TARGET else "FAIL"))
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
