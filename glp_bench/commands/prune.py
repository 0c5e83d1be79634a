"""glp-bench prune: greedy layer pruning (and baselines) of a pre-trained encoder on a GLUE task."""

from __future__ import annotations

import argparse
import math

from ._common import (
    add_device_arg,
    add_task_model_args,
    non_negative_int,
    positive_float,
    positive_int,
    quiet_hf,
)


def add_prune_args(p: argparse.ArgumentParser) -> None:
    add_task_model_args(p)
    add_device_arg(p)
    p.add_argument("--strategy", default="glp",
                   help="comma-separated: glp (greedy search, default), top, bottom, alternate, random; "
                   "e.g. glp,top compares them on a shared full-depth reference")
    p.add_argument("--budget", default="fast", choices=["paper", "fast", "smoke"],
                   help="paper: 3 epochs per candidate on the full 85%% split at lr 2e-5; fast (default): 3 "
                   "epochs on at most 2000 examples per candidate at lr 5e-5; both: the paper's final fine-tuning "
                   "(3 epochs on all of train at lr 2e-5); smoke: tiny, for tests")
    p.add_argument("--min-depth", type=int, default=None,
                   help="prune down to this many layers (default: half the depth, rounded up)")
    p.add_argument("--search-epochs", type=positive_float, default=None, help="epochs per candidate (overrides --budget)")
    p.add_argument("--search-samples", type=non_negative_int, default=None,
                   help="examples of the 85%% split per candidate, 0 = all (overrides --budget)")
    p.add_argument("--epochs", type=positive_float, default=None, help="epochs of each final fine-tune (overrides --budget)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate of all fine-tunes (default: 2e-5, and 5e-5 for the fast search)")
    p.add_argument("--search-lr", type=positive_float, default=None,
                   help="learning rate of the candidate fine-tunes only (overrides --lr and --budget)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split, heads, data order (default 42)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<task>-<model>)")
    p.add_argument("--fresh", action="store_true",
                   help="start over: the existing run directory is moved aside to <dir>.bak-<time>, not deleted")
    g = p.add_argument_group("executor (where the fine-tunes run)")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (default): one fine-tune after the other in this process; ray: the candidates of a "
                   "step and all final fine-tunes as parallel Ray tasks (pip install 'glp-bench[ray]'); a run may "
                   "be resumed with either")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join: auto (the cluster this node belongs to) or HOST:PORT of the head "
                   "('ray start --head' prints it); default: start a local Ray instance for this run")
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
    """Validate arguments (cheaply: no weights loaded) and open or create-to-be the run directory."""
    from pathlib import Path

    from transformers import AutoConfig

    from ..errors import ExecutorError, ModelError
    from ..executors import ExecutorSpec, check_spec
    from ..manifest import RunDir, default_run_dir, now
    from ..models import layer_spec, model_slug, resolve_model
    from ..prune import RESUME_KEYS, check_min_depth, make_plan
    from ..search import parse_strategies
    from ..surgery import original_depth
    from ..tasks import get_task
    from ..train import resolve_device

    task = get_task(args.task)
    strategies = parse_strategies(args.strategy)
    ray_opts = {"address": args.ray_address, "cpus_per_task": args.ray_cpus_per_task, "max_retries": args.ray_max_retries}
    given = {k: v for k, v in ray_opts.items() if v is not None}
    if args.executor != "ray" and given:
        raise ExecutorError(f"--ray-{next(iter(given)).replace('_', '-')} applies to --executor ray only; add --executor ray")
    spec = ExecutorSpec(args.executor, **given)
    check_spec(spec, args.device)  # Ray missing, cluster unreachable: fail before loading anything
    model = resolve_model(args.model)
    try:
        mconfig = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from None
    layer_spec(mconfig.model_type)
    depth = original_depth(mconfig)
    min_depth = check_min_depth(args.min_depth, depth)
    plan = make_plan(task.name, model, args.data_dir, strategies, args.budget, args.seed, min_depth,
                     args.device if spec.kind == "ray" else resolve_device(args.device),  # Ray: resolved on the cluster
                     args.search_epochs, args.search_samples, args.epochs, args.lr, args.search_lr)
    plan.executor = spec
    run = RunDir(args.run_dir or default_run_dir(task.name, model_slug(model)))
    if run.exists() and args.fresh:
        backup = Path(f"{run.path}.bak-{now().replace(':', '').replace('+00:00', '')}")
        run.path.rename(backup)
        print(f"moved the old run to {backup}")
    if run.exists():
        run.load()
        run.check_compatible(plan.config(depth), RESUME_KEYS)
    return plan, run


def _glp_done(run) -> int:
    return sum(len(s["candidates"]) for s in run.strategies.get("glp", {}).get("steps", []))


def _finals_done(run) -> int:
    return sum(1 for m in run.models.values() if m.get("dev_scores") is not None)


def _budget_text(plan) -> str:
    def one(cfg, pool):
        n = f"at most {cfg.max_samples}" if cfg.max_samples else "all"
        return f"{cfg.epochs:g} epochs on {n} examples of {pool} at lr {cfg.lr:g}"

    return f"candidates: {one(plan.search, 'the 85% split')}; finals: {one(plan.final, 'train')}"


def execute(plan, run, console):
    """Run (or resume) the search and the final fine-tunes with ``plan.executor``; returns the removal order
    per strategy. This process is the only writer of the run directory, whichever executor runs the work."""
    from dataclasses import replace

    from ..executors import open_executor
    from ..progress import make_progress
    from ..prune import Pruner, estimate_seconds, final_jobs, removal_orders, search_waves

    with open_executor(plan.executor, plan.device) as executor, make_progress() as progress:
        plan = replace(plan, device=executor.device)
        pruner = Pruner(plan, run, progress, console)
        executor.load(pruner)
        n, min_depth = len(pruner.layers), plan.min_depth
        if run.exists():  # strategies may be added to an existing run
            run.config["strategies"] = list(dict.fromkeys(run.config["strategies"] + plan.strategies))
            run.save()
        else:
            run.create(plan.config(n))

        # The plan, with a time estimate from a short calibration of the full model where the work runs
        # (Workload.calibrate), and rounds of executor.slots parallel fine-tunes.
        n_search = sum(range(min_depth + 1, n + 1)) if "glp" in plan.strategies else 0
        n_final = 1 + len(plan.strategies) * (n - min_depth)  # at most: strategies may share layer sets
        ex_per_s = executor.calibrate()
        search_ex = min(plan.search.max_samples or len(pruner.work.fit), len(pruner.work.fit)) * plan.search.epochs
        final_ex = min(plan.final.max_samples or len(pruner.work.train), len(pruner.work.train)) * plan.final.epochs
        depths = range(min_depth, n + 1)
        cost = (sum(depths) / len(depths) + 1) / (n + 1)  # ~ layers + embeddings/head (about one layer)
        waves = search_waves(n, min_depth, run.strategies.get("glp", {}).get("steps", []), executor.slots) \
            if "glp" in plan.strategies else 0
        final_waves = math.ceil(max(n_final - _finals_done(run), 0) / executor.slots)
        est = estimate_seconds(waves, final_waves, search_ex, final_ex, ex_per_s / cost)
        console.print(
            f"[bold]plan[/]: {plan.task}, {plan.model} ({n} layers) -> depths {n}..{min_depth}; strategies "
            f"{', '.join(plan.strategies)}; budget {plan.budget} ({_budget_text(plan)}); {n_search} candidate fine-tunes "
            f"({_glp_done(run)} done), up to {n_final} final fine-tunes ({_finals_done(run)} done); "
            f"executor {executor.describe()}; estimated {est / 60:.0f} min; run directory {run.path}"
        )
        overall = progress.add_task("glp-bench prune", total=n_search + n_final)

        def on_update():
            run.save()
            progress.update(overall, completed=_glp_done(run) + _finals_done(run))

        def on_step(step, n_steps, n_cand):
            progress.update(overall, description=f"GLP step {step + 1}/{n_steps} ({n_cand} candidates)")

        on_update()
        orders = removal_orders(pruner, plan.strategies, min_depth, on_update=on_update, on_step=on_step,
                                score_many=executor.score_many)
        jobs = final_jobs(run, pruner.layers, orders)
        distinct = list(dict.fromkeys((name, tuple(kept)) for _, name, kept in jobs))
        progress.update(overall, total=n_search + len(distinct), description="final fine-tunes")
        todo = [(name, [i for i in pruner.layers if i not in kept]) for name, kept in distinct
                if run.models[name].get("dev_scores") is None or not run.model_path(name).is_dir()]
        for name, record, staged in executor.run_finals(todo):
            run.models[name].update(pruner.install(name, record, staged))
            on_update()
    return orders


def render(run, console) -> None:
    """Rich table: one row per depth and strategy (the full-depth reference once), all dev scores."""
    from rich.table import Table

    models = run.finished_models()
    if not models:
        return
    keys = list(next(iter(models.values()))["dev_scores"])
    full = max(m["depth"] for m in models.values())
    table = Table(title=f"{run.config['task']}: dev scores per depth ({run.path})")
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


def render_orders(run, orders: dict[str, list[int]], console) -> None:
    """The removal order per strategy and, for GLP, one line per step: the removed layer, its held-out score
    and loss, and which rule decided (the score, or a tie-break: held-out loss, then layer index). Warns
    when no step was decided by the score."""
    from ..search import decided_by
    from ..tasks import get_task

    for strategy, order in orders.items():
        console.print(f"{strategy}: removal order {order}")
    steps = [s for s in run.strategies.get("glp", {}).get("steps", []) if s.get("chosen") is not None]
    if not steps:
        return
    metric = get_task(run.config["task"]).main_metric
    rules = []
    for i, step in enumerate(steps, 1):
        chosen, cands = step["chosen"], step["candidates"]
        rec = cands[str(chosen)]
        rule = decided_by({int(k): v for k, v in cands.items()}, chosen)
        rules.append(rule)
        why = {"score": f"best {metric}", "loss": f"tied on {metric}: lowest held-out loss",
               "layer index": "tied on score and loss: highest layer", "only candidate": "only candidate"}[rule]
        loss = f", loss {rec['loss']:.4f}" if rec.get("loss") is not None else ""
        console.print(f"glp step {i}: removed layer {chosen} of {len(cands)} candidates (held-out {metric} "
                      f"{rec['score']:.4f}{loss}; {why})")
    if "score" not in rules:
        console.print(f"[yellow]note[/]: no GLP step was decided by {metric}: at every step the best held-out "
                      f"{metric} was shared by several candidates (often: all predict the majority class after "
                      f"a short fine-tune), so the order follows the held-out loss. A bigger search budget "
                      f"(--budget paper, or --search-samples 0 --search-epochs 3) lets the metric decide.")


def run(args) -> int:
    from rich.console import Console

    quiet_hf()
    console = Console(stderr=True)
    plan, rundir = prepare(args)
    orders = execute(plan, rundir, console)
    render_orders(rundir, orders, console)
    render(rundir, Console())
    return 0
