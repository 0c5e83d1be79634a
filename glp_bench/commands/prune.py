"""glp-bench prune: greedy layer pruning (and baselines) of a pre-trained encoder on a GLUE task."""

from __future__ import annotations

import argparse
import os

from ._common import (
    add_device_arg,
    add_task_model_args,
    epochs_float,
    lr_float,
    non_negative_int,
    positive_float,
    positive_int,
    quiet_hf,
    seed_int,
    seeds_int,
    unit_float,
    warmup_float,
)


class RunNotOut(argparse.Action):
    """``--out`` on a command that writes a run directory: one error line naming ``--run``."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{parser.prog} writes a run directory: use --run {values} (--out is the output folder of "
                     "'finetune' and 'deploy')")


def add_prune_args(p: argparse.ArgumentParser) -> None:
    add_task_model_args(p)
    add_device_arg(p)
    p.add_argument("--strategy", default="glp,top",
                   help="comma-separated: glp (greedy search), top, bottom, alternate, random (default glp,top: "
                   "GLP against dropping the top layers, on a shared full-depth reference; a depth whose layers "
                   "are the same is trained once; the summary and the report compare them per depth with a paired "
                   "bootstrap on dev). --strategy glp alone skips the baseline")
    p.add_argument("--budget", default="fast", choices=["paper", "fast", "smoke"],
                   help="paper: the paper's protocol (3 epochs per candidate on the full 85%% split, 3 epochs per "
                   "final model on all of train from the pre-trained model, lr 2e-5, no warm-up, no distillation); fast "
                   "(default): 3 epochs on at most 2000 examples per candidate, 3 epochs per final model (5 for the "
                   "full-depth one), the pruned ones started from the run's fine-tuned full model (--student-init), "
                   "with --recipe auto; smoke: tiny, for tests")
    g = p.add_argument_group("recipe and distillation (chosen on the train split, never on dev)")
    g.add_argument("--recipe", default=None, choices=["auto", "paper"],
                   help="auto (default; paper for --budget paper): sweep lr 5e-5, 1e-4, 2e-4 (and 2e-5 if 5e-5 "
                   "wins) with a 10%% warm-up on the full-depth model (search budget, scored on the held-out 15%%) "
                   "and use the winner everywhere; paper: the fixed learning rates of the budget, no warm-up")
    g.add_argument("--warmup", type=warmup_float, default=None,
                   help="warm-up share of the steps of every fine-tune (default 0.1 with --recipe auto, else 0)")
    g.add_argument("--no-distill", dest="distill", action="store_false", default=None,
                   help="fine-tune the pruned depths on the labels alone (the default with --student-init teacher "
                   "and with --budget paper; --student-init pretrained distills by default)")
    g.add_argument("--distill", dest="distill", action="store_true",
                   help="distill the pruned depths from the run's fine-tuned full-depth model (soft targets)")
    g.add_argument("--distill-alpha", type=unit_float, default=None,
                   help="weight of the teacher's soft targets in (0, 1] (default 0.5)")
    g.add_argument("--distill-temperature", type=positive_float, default=None,
                   help="softmax temperature of distillation (default 2)")
    g.add_argument("--student-init", default=None, choices=["teacher", "pretrained"],
                   help="where a pruned final model starts: teacher (default; pretrained for --budget paper) = the "
                   "run's fine-tuned full-depth model with the layers cut out, its head kept; pretrained = the "
                   "pre-trained model with a fresh head (the paper)")
    g.add_argument("--pooling", default=None, choices=["auto", "cls", "mean"],
                   help="what the classifier reads: auto (default; cls for --budget paper) = the pooling the encoder "
                   "was pre-trained with (mean for a sentence-transformers folder that mean-pools, like the default "
                   "model; else cls); cls = the first token (Hugging Face's heads); mean = the masked mean of the "
                   "tokens, through the same head and into the ONNX graphs")
    g.add_argument("--depth-epochs", default=None, choices=["scaled", "same"],
                   help="same (default with --student-init teacher and --budget paper): every depth trains --epochs; "
                   "scaled (default with --student-init pretrained): a final model of d of the L layers trains "
                   "--epochs x L/d epochs, the full model's compute (depth 3 of 6: 6 epochs)")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="training precision: auto (default) = bf16 autocast on CPUs with AVX-512 BF16 or AMX and "
                   "on bf16 GPUs, fp16 on older GPUs, else fp32; exported models are fp32 either way")
    g = p.add_argument_group("seeds and noise")
    g.add_argument("--search-seeds", type=seeds_int, default=1,
                   help="seeds per GLP candidate, ranked by the mean (default 1)")
    g.add_argument("--rescore-close", type=non_negative_int, default=0, metavar="K",
                   help="re-score the K best candidates of a step decided within noise (paired bootstrap) with 2 "
                   "extra seeds each (default 0: off)")
    g.add_argument("--search-halving", default=None, choices=["on", "off"],
                   help="successive halving inside each GLP step and the recipe sweep: every candidate (or lr) "
                   "trains 1/3 of its budget, those the paired bootstrap places clearly behind the leader stop, the "
                   "rest go on (again at 2/3); the survivors end exactly as without it (default: on for --budget "
                   "fast, off otherwise)")
    g.add_argument("--final-seeds", type=seeds_int, default=1,
                   help="seeds per final model; the report shows mean and std; the first seed's model is the one "
                   "saved and exported (default 1)")
    p.add_argument("--min-depth", type=int, default=None,
                   help="prune down to this many layers (default: half the depth, rounded up)")
    p.add_argument("--search-epochs", type=epochs_float, default=None, help="epochs per candidate (overrides --budget)")
    p.add_argument("--search-samples", type=non_negative_int, default=None,
                   help="examples of the 85%% split per candidate, 0 = all (overrides --budget)")
    p.add_argument("--epochs", type=epochs_float, default=None,
                   help="epochs of every final fine-tune (x L/d with --depth-epochs scaled), the full-depth one "
                   "included unless --reference-epochs is given (overrides --budget)")
    p.add_argument("--reference-epochs", type=epochs_float, default=None,
                   help="epochs of the full-depth final alone (default: 5 with --budget fast unless --epochs is "
                   "given, chosen on the train split; else --epochs)")
    p.add_argument("--lr", type=lr_float, default=None,
                   help="learning rate of all fine-tunes; giving it skips the lr sweep (default: with --recipe "
                   "auto the sweep's winner; with --recipe paper 2e-5, and 5e-5 for the fast search)")
    p.add_argument("--search-lr", type=lr_float, default=None,
                   help="learning rate of the candidate fine-tunes only (overrides --lr and --budget)")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help="max tokens per example in every fine-tune, the export's validation and the deployed bundle "
                   "(default 128; at most what the model's position embeddings hold)")
    p.add_argument("--seed", type=seed_int, default=42, help="seed of the split, heads, data order (default 42)")
    p.add_argument("--run", "--run-dir", dest="run_dir", default=None,
                   help="run directory (default runs/<task>-<model>); --run-dir: the old spelling, kept for this release")
    p.add_argument("--out", action=RunNotOut, help=argparse.SUPPRESS)
    p.add_argument("--fresh", action="store_true",
                   help="start over: the existing run directory is moved aside to <dir>.bak-<time>, not deleted")
    g = p.add_argument_group("executor (where the fine-tunes run)")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (default): one fine-tune after the other in this process; ray: the candidates of a "
                   "step and all final fine-tunes as parallel Ray tasks (pip install 'glp-bench[ray]'); a run may "
                   "be resumed with either")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join: auto (the cluster this node belongs to) or HOST:PORT of the head "
                   "('ray start --head' prints it); default: $RAY_ADDRESS when set, else start a local Ray instance for "
                   "this run")
    g.add_argument("--ray-cpus-per-task", type=positive_int, default=None,
                   help="CPUs (and torch threads) per task when tasks run on CPU (default 1); with GPUs each task "
                   "asks for one GPU")
    g.add_argument("--ray-max-retries", type=non_negative_int, default=None,
                   help="re-runs of a task whose worker or node died (default 3)")


def add_parser(sub):
    p = sub.add_parser(
        "prune", help="greedy layer pruning + baselines, then fine-tune every depth (resumable)",
        description="Greedy layer pruning (Peer et al., arXiv 2105.14839): at each step, every remaining layer "
        "of the pre-trained encoder is a candidate; the candidate model is fine-tuned on a seeded 85%% of the "
        "train split and scored (main metric) on the other 15%%; the best removal is kept (ties: the highest "
        "layer index). Then every depth is fine-tuned on the full train split and scored on dev. Interrupted "
        "runs resume where they stopped when started again with the same arguments.",
    )
    add_prune_args(p)
    return p


def prepare(args):
    """Validate arguments (cheaply: no weights loaded) and open the run directory (``open_run``: lock, clean-up,
    ``--fresh``, resume checks). Returns the plan and the ``OpenRun`` (its ``run``; the lock held)."""
    from ..core.errors import ExecutorError, ModelError
    from ..core.openrun import open_run
    from ..core.rundir import default_run_dir
    from ..data.identity import current_identity
    from ..data.resolve import task_from_args
    from ..prune.custom_code import load_config
    from ..prune.executors import ExecutorSpec, check_spec
    from ..prune.models import check_max_length, layer_spec, model_slug, resolve_model
    from ..prune.plan import RESUME_KEYS, check_min_depth, make_plan
    from ..prune.search import parse_strategies
    from ..prune.surgery import original_depth
    from ..prune.train import TrainConfig, resolve_device

    task = task_from_args(args)  # GLUE name, .toml file or --train/--dev flags
    strategies = parse_strategies(args.strategy)
    ray_opts = {"address": args.ray_address, "cpus_per_task": args.ray_cpus_per_task, "max_retries": args.ray_max_retries}
    given = {k: v for k, v in ray_opts.items() if v is not None}
    if args.executor != "ray" and given:
        raise ExecutorError(f"--ray-{next(iter(given)).replace('_', '-')} applies to --executor ray only; add --executor ray")
    if args.executor == "ray" and args.ray_address is None and os.environ.get("RAY_ADDRESS"):
        given.update(address=os.environ["RAY_ADDRESS"], address_from="RAY_ADDRESS")
    spec = ExecutorSpec(args.executor, **given)
    check_spec(spec, args.device)  # Ray missing, cluster unreachable: fail before loading anything
    model = resolve_model(args.model)
    try:
        mconfig = load_config(model)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from None
    layer_spec(mconfig.model_type)
    check_max_length(args.max_length or TrainConfig.max_length, mconfig, model)
    depth = original_depth(mconfig)
    min_depth = check_min_depth(args.min_depth, depth)
    plan = make_plan(task.name, model, args.data_dir, strategies, args.budget, args.seed, min_depth,
                     args.device if spec.kind == "ray" else resolve_device(args.device),  # Ray: resolved on the cluster
                     args.search_epochs, args.search_samples, args.epochs, args.lr, args.search_lr,
                     recipe=args.recipe, warmup=args.warmup, distill=args.distill, distill_alpha=args.distill_alpha,
                     distill_temperature=args.distill_temperature, precision=args.precision,
                     search_seeds=args.search_seeds, rescore_close=args.rescore_close, final_seeds=args.final_seeds,
                     depth_epochs=args.depth_epochs, student_init=args.student_init, pooling=args.pooling,
                     reference_epochs=args.reference_epochs, max_length=args.max_length,
                     search_halving=args.search_halving)
    plan.executor = spec
    if spec.kind == "local":  # bf16 on a CPU without it, fp16 on a CPU: refused before any work
        from ..prune.precision import resolve_precision

        resolve_precision(plan.precision, plan.device)
    plan.task_def = task.definition  # a custom task lives in the run config
    opened = open_run(args.run_dir or default_run_dir(task.name, model_slug(model)), create=True, fresh=args.fresh,
                      config=plan.config(depth), resume_keys=RESUME_KEYS,
                      identity=lambda: current_identity(task, model, args.data_dir))  # a Task: custom ones too
    if opened.moved:
        print(f"moved the old run to {opened.moved}")
    return plan, opened


def prune(plan, rundir) -> None:
    """The prune stage on an opened run, then its removal orders and dev-score tables."""
    from rich.console import Console

    from ..prune.stage import prune_run

    console = Console(stderr=True)
    orders = prune_run(plan, rundir, console)
    render_orders(rundir, orders, console)
    render(rundir, Console())


def render(run, console) -> None:
    """Rich table: one row per depth and strategy (the full-depth reference once), all dev scores."""
    from rich.table import Table

    models = run.finished_models()
    if not models:
        return
    keys = list(next(iter(models.values()))["dev_scores"])
    full = max(m["depth"] for m in models.values())
    table = Table(title=f"{run.cfg.task}: dev scores per depth ({run.path})")
    for col in ("depth", "strategy", "kept layers", *keys):
        table.add_column(col, justify="right" if col not in ("strategy", "kept layers") else "left")
    rows = {}
    for strategy, srec in run.strategies.items():
        for name in srec.get("models", {}).values():
            rec = models.get(name)
            if rec is not None:
                label = "reference" if rec["depth"] == full else strategy
                rows[(-rec["depth"], label)] = rec
    for (_, label), rec in sorted(rows.items(), key=lambda kv: kv[0]):
        table.add_row(str(rec["depth"]), label, ",".join(map(str, rec["kept_layers"])),
                      *(f"{rec['dev_scores'][k]:.4f}" for k in keys))
    console.print(table)
    render_comparison(run, console)


def render_comparison(run, console) -> None:
    """GLP against each baseline per depth: dev scores, difference with its bootstrap interval, verdict."""
    from rich.table import Table

    from ..report.render import versus_text

    comp = run.section("comparison", {})
    for baseline, rows in (comp.get("baselines") or {}).items():
        if not rows:
            continue
        table = Table(title=f"GLP vs {baseline} per depth (dev {comp.get('metric')}, points; paired bootstrap over "
                      "the dev examples: reported, never used to choose)")
        for col in ("depth", "glp", baseline, "glp - " + baseline + " [95% interval], verdict"):
            table.add_column(col, justify="right" if col == "depth" else "left")
        for depth, rec in sorted(rows.items(), key=lambda kv: -int(kv[0])):
            def score(name):
                m = run.model(name)
                v = m.score(comp.get("key")) if m else None
                return f"{v * 100:.2f} ({','.join(map(str, m.kept_layers))})" if v is not None else "-"
            table.add_row(depth, score(rec["glp"]), score(rec[baseline]), versus_text(rec))
        console.print(table)


def render_orders(run, orders: dict[str, list[int]], console) -> None:
    """The removal order per strategy and, for GLP, one line per step: the removed layer, its held-out score
    and loss, and which rule decided (the score, or a tie-break: held-out loss, then layer index). Warns
    when no step was decided by the score."""
    from ..data.resolve import task_of_run
    from ..prune.search import decided_by, step_pool

    for strategy, order in orders.items():
        console.print(f"{strategy}: removal order {order}")
    steps = [s for s in run.strategy("glp").steps if s.get("chosen") is not None]
    if not steps:
        return
    metric = task_of_run(run.config).main_metric
    rules = []
    for i, step in enumerate(steps, 1):
        chosen, cands = step["chosen"], step_pool(step)
        rec = cands[chosen]
        rule = decided_by(cands, chosen)
        rules.append(rule)
        why = {"score": f"best {metric}", "loss": f"tied on {metric}: lowest held-out loss",
               "layer index": "tied on score and loss: highest layer", "only candidate": "only candidate"}[rule]
        loss = f", loss {rec['loss']:.4f}" if rec.get("loss") is not None else ""
        rescored = (step.get("rescore") or {}).get("candidates")
        seeds = f" over {len(rec['seeds'])} seeds" if len(rec.get("seeds") or {}) > 1 else ""
        noise = step.get("noise") or {}
        if noise:
            lo, hi = noise["intervals"][str(chosen)]
            sure = (f"; within noise: P(best) {noise['p_best']:.2f}, beats runner-up {noise['runner_up']} in "
                    f"{noise['p_over_runner_up']:.0%} of bootstrap draws" if noise["within_noise"]
                    else f"; clear: P(best) {noise['p_best']:.2f}")
            sure = f", 95% interval {lo:.3f}..{hi:.3f}{sure}"
        else:
            sure = ""
        more = f"; re-scored the {len(rescored)} best with extra seeds" if rescored else ""
        stopped = [k for k, v in step["candidates"].items() if "stopped_at" in v]
        if stopped:
            if rule == "only candidate":
                why = "the only one successive halving kept to the whole budget"
            more += f"; halving stopped {len(stopped)} early (layers {', '.join(sorted(stopped, key=int))})"
        console.print(f"glp step {i}: removed layer {chosen} of {len(step['candidates'])} candidates (held-out "
                      f"{metric} {rec['score']:.4f}{seeds}{loss}; {why}{sure}{more})")
    if "score" not in rules:
        console.print(f"[yellow]note[/]: no GLP step was decided by {metric}: at every step the best held-out "
                      f"{metric} was shared by several candidates (often: all predict the majority class after "
                      f"a short fine-tune), so the order follows the held-out loss. A bigger search budget "
                      f"(--budget paper, or --search-samples 0 --search-epochs 3) lets the metric decide.")


def run(args) -> int:
    quiet_hf()
    plan, opened = prepare(args)
    with opened:
        prune(plan, opened.run)
    return 0
