"""The score gate's decision rule (glp_bench.gate.score_decide) on synthetic predictions: pure, no models.

Regression = the one-sided upper bound of the paired-bootstrap difference below -max_drop; no regression = the
lower bound at or above -max_drop; undecided otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, matthews_corrcoef

from glp_bench.gate import score_decide as sd


def acc(p, y):
    return float(np.mean(np.asarray(p) == np.asarray(y)))  # accuracy_score's value, without its per-call checks


def mcc(p, y):
    return matthews_corrcoef(y, p)


def pearson(p, y):
    from scipy.stats import pearsonr

    return pearsonr(p, y)[0]


def flip_correct(pred, labels, k, rng):
    """``pred`` with ``k`` of its correct answers made wrong (binary labels)."""
    out = pred.copy()
    right = np.flatnonzero(out == labels)
    idx = rng.choice(right, k, replace=False)
    out[idx] = 1 - out[idx]
    return out


@pytest.fixture
def binary():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    base = np.where(rng.random(1000) < 0.85, y, 1 - y)  # an 85%-accurate model
    return rng, y, base


def test_a_clearly_worse_model_fails_and_mcnemar_counts_its_errors(binary):
    rng, y, base = binary
    worse = flip_correct(base, y, 150, rng)
    v = sd.compare_scores(base, worse, y, acc, metric_name="accuracy")
    assert v.status == sd.REGRESSION and v.exit_code == 1
    assert v.delta == pytest.approx(100 * (acc(worse, y) - acc(base, y))) == pytest.approx(-15.0)
    assert v.lo <= v.delta <= v.hi < -v.max_drop and v.p_worse < v.alpha
    assert v.examples_counts == {"baseline_only_right": 150, "candidate_only_right": 0} and v.examples_p < 1e-40
    assert v.n_examples == 1000 and v.n_resamples == sd.DEFAULT_RESAMPLES


def test_identical_models_pass_exactly(binary):
    _, y, base = binary
    for metric in (acc, mcc):
        v = sd.compare_scores(base, base.copy(), y, metric)
        assert v.status == sd.NO_REGRESSION and v.exit_code == 0
        assert v.delta == v.lo == v.hi == 0.0 and v.p_worse == 1.0 and v.examples_p == 1.0


def test_a_tiny_difference_passes_on_many_examples_and_is_undecided_on_few(binary):
    rng, y, base = binary
    v = sd.compare_scores(base, flip_correct(base, y, 3, rng), y, acc)  # -0.3 points on 1000 examples
    assert v.status == sd.NO_REGRESSION and -1 <= v.lo <= v.delta == pytest.approx(-0.3)
    few_y, few_b = y[:60], base[:60]
    v = sd.compare_scores(few_b, flip_correct(few_b, few_y, 1, rng), few_y, acc)  # -1.7 points on 60 examples
    assert v.status == sd.UNDECIDED and v.exit_code == 2
    assert v.lo < -v.max_drop <= v.hi and v.p_worse >= v.alpha
    assert "could be worse" in v.reason


def test_pairing_is_what_makes_a_small_drop_significant(binary):
    """20 answers flipped out of 1000 (-2 points) on an 85% model: the paired interval is narrow enough to call
    it (an unpaired bootstrap's half-width would be ~2.6 points at this size)."""
    rng, y, base = binary
    v = sd.compare_scores(base, flip_correct(base, y, 20, rng), y, acc)
    assert v.status == sd.REGRESSION and v.hi - v.lo < 2.0


def test_max_drop_moves_the_line_and_an_improvement_passes(binary):
    rng, y, base = binary
    worse = flip_correct(base, y, 50, rng)  # -5 points
    assert sd.compare_scores(base, worse, y, acc, max_drop=1.0).status == sd.REGRESSION
    assert sd.compare_scores(base, worse, y, acc, max_drop=5.0).status == sd.UNDECIDED  # the line sits in the CI
    assert sd.compare_scores(base, worse, y, acc, max_drop=10.0).status == sd.NO_REGRESSION
    better = sd.compare_scores(worse, base, y, acc)
    assert better.status == sd.NO_REGRESSION and better.delta > 0 and better.examples_p == 1.0


def test_the_metric_is_the_tasks_own_not_accuracy(binary):
    """MCC punishes answering one class: a candidate that always says the majority class keeps much of the
    accuracy but loses all of the MCC, and the gate sees it through the MCC."""
    _, y, base = binary
    majority = np.full_like(y, np.bincount(y).argmax())
    v = sd.compare_scores(base, majority, y, mcc, metric_name="mcc", n_resamples=200)  # sklearn: ~ms per call
    assert v.status == sd.REGRESSION and v.candidate == 0.0 and v.delta == pytest.approx(-100 * mcc(base, y))


def test_the_verdict_is_reproducible(binary):
    rng, y, base = binary
    cand = flip_correct(base, y, 12, rng)
    a, b = (sd.compare_scores(base, cand, y, acc) for _ in range(2))
    assert a == b


def test_regression_tasks_use_the_metric_and_a_wilcoxon_test_on_errors():
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 5, 400)
    base = y + rng.normal(0, 0.5, 400)
    noisy = y + rng.normal(0, 2.0, 400)
    v = sd.compare_scores(base, noisy, y, pearson, metric_name="pearson", regression=True)
    assert v.status == sd.REGRESSION and v.examples_test == sd.WILCOXON_TEST and v.examples_p < 1e-6
    assert v.examples_counts["worse"] > v.examples_counts["better"]
    same = sd.compare_scores(base, base.copy(), y, pearson, regression=True)
    assert same.status == sd.NO_REGRESSION and same.examples_counts == {"worse": 0, "better": 0, "ties": 400}
    flat = sd.compare_scores(base, np.full(400, 2.0), y, pearson, regression=True)  # Pearson undefined
    assert flat.status == sd.UNDECIDED and "undefined" in flat.reason


def test_the_fast_accuracy_helper_is_accuracy(binary):
    _, y, base = binary
    assert acc(base, y) == accuracy_score(y, base)


def test_bad_arguments_raise():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="one prediction per example"):
        sd.compare_scores(y, y[:3], y, acc)
    with pytest.raises(ValueError, match="alpha"):
        sd.compare_scores(y, y, y, acc, alpha=0.7)
    with pytest.raises(ValueError, match="max_drop"):
        sd.compare_scores(y, y, y, acc, max_drop=-1)
    assert sd.compare_scores(y[:1], y[:1], y[:1], acc).status == sd.UNDECIDED
