"""Speed benchmark: where a fine-tuning step of the default model goes, and what torch's fused AdamW saves.

Same process, same batches: the full-depth default model (all-MiniLM-L6-v2) takes training steps on
length-grouped batches of real CoLA (batch 32, as the fine-tunes do) with the plain per-parameter AdamW and with
the fused one that ``glp_bench.prune.train.adamw`` picks (what every fine-tune uses), alternating block by block (``--blocks`` of
``--steps`` steps each). Prints the median milliseconds of forward, backward, gradient clipping and optimizer
step per optimizer, the step-time ratio, and the largest difference between the two optimizers' weights after
the same updates from the same start (the same algorithm: float rounding only).

    python benchmarks/bench_optimizer.py [--steps 10] [--blocks 4] [--threads N]

Exits 0 (a benchmark reports, it does not gate).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per block (default 10)")
    p.add_argument("--blocks", type=int, default=4, help="blocks per optimizer, alternating (default 4)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    args = p.parse_args()

    import copy

    import torch

    from glp_bench.commands._common import quiet_hf
    from glp_bench.core.machine import cpu_model
    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task
    from glp_bench.prune.models import load_classifier, load_tokenizer, resolve_model
    from glp_bench.prune.train import TrainConfig, _loader, adamw, tokenize

    quiet_hf()
    if args.threads:
        torch.set_num_threads(args.threads)
    task, model_id = get_task("cola"), resolve_model(None)
    tok = load_tokenizer(model_id)
    train = tokenize(load_task_data(task, None)["train"], tok, task)
    batches = list(itertools.islice(_loader(train, tok, TrainConfig(), shuffle=True, seed=0), args.steps + 2))
    base = load_classifier(model_id, task, seed=0).train()
    models = {"plain": copy.deepcopy(base), "fused": copy.deepcopy(base)}
    opts = {"plain": torch.optim.AdamW(models["plain"].parameters(), lr=1e-4),
            "fused": adamw(models["fused"].parameters(), 1e-4, "cpu")}
    assert opts["fused"].defaults.get("fused"), "this torch has no fused AdamW on the CPU"
    times = {k: {"forward": [], "backward": [], "clip": [], "optimizer": []} for k in models}

    done = {k: 0 for k in models}

    def step(name, batch):
        torch.manual_seed(done[name])  # the same dropout masks for both optimizers, step by step
        done[name] += 1
        model, opt, t = models[name], opts[name], [time.perf_counter()]
        loss = model(**batch).loss
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t.append(time.perf_counter())
        opt.step()
        opt.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        return [b - a for a, b in itertools.pairwise(t)]

    for name in models:  # warm-up: the first steps allocate the optimizer state
        for batch in batches[:2]:
            step(name, batch)
    for block in range(args.blocks):
        for name in (("plain", "fused") if block % 2 == 0 else ("fused", "plain")):
            for batch in batches[2:]:
                for part, sec in zip(times[name], step(name, batch), strict=True):
                    times[name][part].append(sec * 1e3)

    diff = max((a - b).abs().max().item() for a, b in zip(models["plain"].parameters(), models["fused"].parameters(), strict=True))
    print(f"all-MiniLM-L6-v2, CoLA batches of 32 (length-grouped), {torch.get_num_threads()} threads, {cpu_model()}; "
          f"median ms over {args.blocks // 2 + args.blocks % 2}+{args.blocks // 2} alternating blocks of "
          f"{args.steps} steps")
    med = {k: {part: statistics.median(v) for part, v in t.items()} for k, t in times.items()}
    for name, parts in med.items():
        print(f"  {name:5s} AdamW: " + ", ".join(f"{part} {ms:.1f}" for part, ms in parts.items())
              + f"; step {sum(parts.values()):.1f} ms")
    total = {k: sum(v.values()) for k, v in med.items()}
    print(f"fused / plain step time {total['fused'] / total['plain']:.3f} (optimizer "
          f"{med['plain']['optimizer'] / med['fused']['optimizer']:.1f}x faster); largest weight difference after "
          f"{2 + args.steps * args.blocks} identical updates: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
