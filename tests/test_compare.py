"""GLP against a baseline per depth on dev: the paired bootstrap of glp_bench.prune.compare on known labels."""

from __future__ import annotations

import numpy as np
import pytest

from glp_bench.data.resolve import get_task
from glp_bench.prune.compare import compare_pair, compare_strategies

TASK = get_task("cola")


def mcc(p, y):
    return TASK.metric_fn(p, y)[TASK.main_metric]


def _labels(n=400, seed=0):
    return np.random.default_rng(seed).integers(0, 2, n)


def _noisy(labels, flip, seed):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(labels)) < flip, 1 - labels, labels)


def test_a_clearly_better_model_wins_and_the_interval_excludes_zero():
    y = _labels()
    good, bad = _noisy(y, 0.1, 1), _noisy(y, 0.4, 2)
    rec = compare_pair(good, bad, y, mcc, draws=300)
    assert rec["verdict"] == "glp better" and rec["ci95"][0] > 0 and rec["p_better"] > 0.99
    assert rec["diff_points"] == pytest.approx((mcc(good, y) - mcc(bad, y)) * 100)
    rec = compare_pair(bad, good, y, mcc, baseline="top", draws=300)
    assert rec["verdict"] == "top better" and rec["ci95"][1] < 0 and rec["p_better"] < 0.01


def test_the_same_predictions_are_within_noise_and_a_small_difference_too():
    y = _labels()
    a = _noisy(y, 0.25, 3)
    same = compare_pair(a, a, y, mcc, draws=200)
    assert same["verdict"] == "within noise" and same["diff_points"] == 0 and same["p_better"] == 0.5
    b = a.copy()
    b[:3] = 1 - b[:3]  # three flipped answers
    close = compare_pair(a, b, y, mcc, draws=300)
    assert close["verdict"] == "within noise" and close["ci95"][0] <= 0 <= close["ci95"][1]


def test_strategies_per_depth_same_layers_missing_and_compared():
    y = _labels(200)
    preds = {"depth-05": _noisy(y, 0.1, 4), "depth-04": _noisy(y, 0.1, 5), "depth-04-top": _noisy(y, 0.45, 6)}
    by_depth = {"glp": {5: "depth-05", 4: "depth-04", 3: "depth-03"},
                "top": {5: "depth-05", 4: "depth-04-top", 3: "depth-03-top"}}
    out = compare_strategies(by_depth, preds.get, y, mcc)
    rows = out["top"]
    assert list(rows) == ["5", "4", "3"]
    assert rows["5"] == {"glp": "depth-05", "top": "depth-05", "verdict": "same layers"}
    assert rows["4"]["verdict"] == "glp better" and rows["4"]["top"] == "depth-04-top"
    assert rows["3"]["verdict"] == "no dev predictions stored"
    assert compare_strategies({"glp": {5: "a"}}, preds.get, y, mcc) == {}
