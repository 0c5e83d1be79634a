"""GLP against a baseline at the same depth, on dev: a seeded, paired bootstrap over the dev examples. Pure logic.

Both models of a depth are scored on the same dev examples, so each draw resamples the examples once and scores
both on it (``noise.draw_scores``). The verdict reports a result, it chooses nothing: GLP's layers were chosen
on the train split, and dev only says how far apart the two finished models are and how sure that is.

* ``diff_points``: GLP minus the baseline on all of dev, in points (metric x 100);
* ``ci95``: the 2.5th and 97.5th percentiles of the per-draw difference, in points;
* ``p_better``: the share of draws in which GLP scores above the baseline (a tie counts one half);
* ``verdict``: ``glp better`` / ``<baseline> better`` when the 95% interval excludes zero, else ``within noise``;
  ``same layers`` when both strategies kept the same layers (one model, nothing to compare).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .noise import DRAWS, draw_scores


def compare_pair(glp: np.ndarray, other: np.ndarray, labels: np.ndarray,
                 metric: Callable[[np.ndarray, np.ndarray], float], baseline: str = "top",
                 draws: int = DRAWS, seed: int = 0) -> dict:
    """The paired-bootstrap record of GLP's predictions ``glp`` against ``other`` on ``labels``."""
    d = draw_scores({0: glp, 1: other}, labels, metric, draws=draws, seed=seed)
    diff = (d[0] - d[1]) * 100.0
    lo, hi = (float(x) for x in np.percentile(diff, [2.5, 97.5]))
    point = (metric(np.asarray(glp), np.asarray(labels)) - metric(np.asarray(other), np.asarray(labels))) * 100.0
    verdict = "glp better" if lo > 0 else f"{baseline} better" if hi < 0 else "within noise"
    return {"diff_points": float(point), "ci95": [lo, hi],
            "p_better": float(np.mean(np.where(diff > 0, 1.0, np.where(diff == 0, 0.5, 0.0)))),
            "verdict": verdict, "draws": draws, "seed": seed}


def compare_strategies(models_by_depth: dict[str, dict[int, str]], preds: Callable[[str], np.ndarray | None],
                       labels: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float],
                       seed: int = 0) -> dict:
    """``{baseline: {depth: record}}`` for every baseline strategy against ``glp``: ``models_by_depth`` is
    ``{strategy: {depth: model name}}``, ``preds(name)`` a model's dev predictions (None when not stored)."""
    glp = models_by_depth.get("glp") or {}
    out: dict[str, dict] = {}
    for baseline, by_depth in models_by_depth.items():
        if baseline == "glp":
            continue
        rows = {}
        for depth in sorted(set(glp) & set(by_depth), reverse=True):
            a, b = glp[depth], by_depth[depth]
            rec = {"glp": a, baseline: b}
            if a == b:
                rec["verdict"] = "same layers"
            else:
                pa, pb = preds(a), preds(b)
                if pa is None or pb is None:
                    rec["verdict"] = "no dev predictions stored"
                else:
                    rec.update(compare_pair(pa, pb, labels, metric, baseline, seed=seed + depth))
            rows[str(depth)] = rec
        out[baseline] = rows
    return out
