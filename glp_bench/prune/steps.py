"""The search's steps as the stage runs them: the removal order per strategy (GLP's greedy loop, the baselines),
candidates scored through the executor, their held-out predictions stored and each step bootstrapped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.rundir import RunDir
from .search import baseline_order, greedy_search


def removal_orders(pruner, strategies: list[str], min_depth: int, on_update, on_step, score_many,
                   **search_options) -> dict[str, list[int]]:
    """Removal order per strategy (GLP searched and logged in the manifest; baselines computed). ``score_many``
    scores a step's candidates (``candidate_scorer``); ``search_options`` go to ``greedy_search`` (``assess``,
    ``rescore_close``, ``rescore_many``)."""
    run, n = pruner.run, len(pruner.layers)
    orders = {}
    for strategy in strategies:
        rec = run.strategy_log(strategy)
        if strategy == "glp":
            order = greedy_search(pruner.layers, min_depth, score_many, rec["steps"], on_update=on_update,
                                  on_step=on_step, **search_options)
        else:
            order = baseline_order(strategy, n, pruner.plan.seed)[: n - min_depth]
        rec["order"] = order
        on_update()
        orders[strategy] = order
    return orders


def candidate_scorer(run: RunDir, executor, seeds: list[int]):
    """``score_many`` for ``greedy_search``: the executor scores each candidate with ``seeds``; the driver
    stores the held-out predictions (``RunDir.preds_path``) and logs the rest."""

    def score_many(removed, candidates):
        for c, rec in executor.score_many(tuple(removed), list(candidates), seeds=seeds):
            store_preds(run, len(removed), c, rec.pop("preds"))
            yield c, rec

    return score_many


def save_array(path: Path, array) -> None:
    """``np.save`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(array))
    os.replace(tmp, path)


def store_preds(run: RunDir, step: int, layer: int, preds: dict) -> None:
    for seed, p in preds.items():
        save_array(run.preds_path(step, layer, seed), p)


def step_assessor(run: RunDir, task, held_labels, seed: int):
    """``assess(step, pool, chosen, ranking)`` for ``greedy_search``: the paired bootstrap of
    ``glp_bench.prune.noise`` over the stored held-out predictions (``None`` when a prediction file is missing, e.g.
    a step logged before predictions were stored)."""
    from .noise import assess, draw_scores

    labels = np.asarray(held_labels)

    def metric(p, y):
        return task.metric_fn(p, y)[task.main_metric]

    def run_assess(step: int, pool: dict, chosen: int, ranking: list[int]):
        try:
            preds = {c: np.stack([np.load(run.preds_path(step, c, s)) for s in rec.get("seeds", {})])
                     for c, rec in pool.items()}
        except (OSError, ValueError):
            return None
        if any(p.size == 0 for p in preds.values()):
            return None
        return assess(draw_scores(preds, labels, metric, seed=seed + step), chosen, ranking)

    return run_assess
