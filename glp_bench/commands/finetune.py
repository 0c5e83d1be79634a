"""glp-bench finetune: fine-tune one (optionally pruned) model on a GLUE task and score it on dev."""

from __future__ import annotations

from ._common import (
    add_device_arg,
    add_task_model_args,
    epochs_float,
    lr_float,
    parse_layers,
    positive_int,
    quiet_hf,
    seed_int,
    warmup_float,
)


def add_parser(sub):
    p = sub.add_parser(
        "finetune", help="fine-tune a model (optionally with layers removed) and score it on the dev split",
        description="Fine-tune a model on a GLUE task with the paper's defaults (AdamW, lr 2e-5, batch 32, "
        "3 epochs, max length 128, linear schedule) using dynamic padding and length-grouped batches, then "
        "score it on the dev split(s). Saves the model (safetensors + tokenizer) and scores.json.",
    )
    add_task_model_args(p)
    add_device_arg(p)
    p.add_argument("--out", default=None, help="output folder (default runs/<task>-<model>/finetune); must not hold "
                   "a result yet, unless --force")
    p.add_argument("--force", action="store_true",
                   help="replace an existing result at --out (the old one is moved aside to <out>.bak-<time>)")
    p.add_argument("--drop-layers", default=None, help="comma-separated encoder layers to remove first, e.g. 3,5")
    p.add_argument("--epochs", type=epochs_float, default=3.0, help="training epochs (default 3)")
    p.add_argument("--lr", type=lr_float, default=2e-5, help="peak learning rate (default 2e-5)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--max-length", type=positive_int, default=128, help="max tokens per example (default 128)")
    p.add_argument("--max-samples", type=positive_int, default=None, help="train on at most this many examples")
    p.add_argument("--seed", type=seed_int, default=42, help="random seed (default 42)")
    p.add_argument("--pad-to-max", action="store_true", help="pad every example to --max-length (the paper's protocol; slow)")
    p.add_argument("--warmup", type=warmup_float, default=0.0, help="warm-up share of the steps (default 0, the paper's)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="training precision: auto (default) = bf16 autocast on CPUs with AVX-512 BF16 or AMX and on "
                   "bf16 GPUs, fp16 on older GPUs, else fp32; the saved model is fp32 either way")
    p.add_argument("--pooling", default=None, choices=["auto", "cls", "mean"],
                   help="what the classifier reads (glp-bench prune's --pooling): default = what a model saved by "
                   "glp-bench records, else cls (the paper's); auto = the pooling the encoder was pre-trained with")
    return p


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from ..core.errors import GlpError
    from ..core.outputs import check_output
    from ..core.preflight import writable_dir
    from ..core.rundir import default_run_dir
    from ..data.checks import check_train_split
    from ..data.identity import model_identity
    from ..data.loaders import load_task_data
    from ..data.resolve import task_from_args
    from ..prune.finetune import finetune_model
    from ..prune.models import check_max_length, load_config, model_slug, resolve_model
    from ..prune.pooling import resolve_pooling
    from ..prune.precision import resolve_precision
    from ..prune.train import TrainConfig, resolve_device

    quiet_hf()
    task = task_from_args(args)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)  # bf16 without support, fp16 on a CPU: refused now
    layers = parse_layers(args.drop_layers)
    model_id = resolve_model(args.model)
    check_max_length(args.max_length, load_config(model_id), model_id)  # a long text would fail mid-training
    data = load_task_data(task, args.data_dir)
    check_train_split(task, data)  # one class, constant targets: nothing to learn
    pooling = resolve_pooling(args.pooling, model_id) if args.pooling else None
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                      seed=args.seed, max_samples=args.max_samples, pad_to_max=args.pad_to_max,
                      warmup_ratio=args.warmup, precision=precision)
    out = Path(args.out) if args.out else default_run_dir(task.name, model_slug(model_id)) / "finetune"
    writable_dir(out, "--out")  # before the training, not after it
    check_output(out, "--out", folder=True, example="runs/my-finetune")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise GlpError(f"--out {out} already holds a result; add --force to replace it (the old one is moved "
                       "aside) or choose another --out")
    model_identity(model_id)  # a truncated or garbage safetensors file fails now
    scores, stats = finetune_model(task, model_id, data, layers, cfg, device, out, console=Console(stderr=True),
                                   pooling=pooling)
    Console().print(
        f"{task.name} dev: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        + f"  ({stats['seconds']:.0f} s training, {stats['examples_per_s']:.0f} examples/s) -> {out}"
    )
    return 0
