"""Statistics of glp_bench.bench.stats on synthetic samples whose answers are known by hand."""

from __future__ import annotations

import math
import random

import pytest

from glp_bench.bench import stats


def test_percentiles_match_hand_computed_ranks():
    samples = [float(x) for x in range(1, 101)]  # 1..100
    random.Random(0).shuffle(samples)  # order must not matter
    # linear interpolation between closest ranks: rank = q/100 * (n-1)
    assert stats.percentile(samples, 50) == pytest.approx(50.5)
    assert stats.percentile(samples, 90) == pytest.approx(90.1)
    assert stats.percentile(samples, 99) == pytest.approx(99.01)
    assert stats.percentile(samples, 0) == 1.0 and stats.percentile(samples, 100) == 100.0
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError):
        stats.percentile(samples, 101)
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_summary_mean_std_cv():
    samples = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    s = stats.summarize(samples)
    assert s["n"] == 8
    assert s["mean"] == pytest.approx(5.0)
    # sample std (ddof=1): sum of squared deviations 32 / 7
    assert s["std"] == pytest.approx(math.sqrt(32 / 7))
    assert s["cv"] == pytest.approx(math.sqrt(32 / 7) / 5.0)
    assert (s["min"], s["max"]) == (2.0, 9.0)
    assert s["p50"] == pytest.approx(4.5)
    assert stats.cv(samples) == pytest.approx(s["cv"])
    one = stats.summarize([0.25])
    assert one["std"] == 0.0 and one["cv"] == 0.0 and one["p99"] == 0.25
    with pytest.raises(ValueError):
        stats.summarize([1.0, float("nan")])


def test_unstable_spread_is_flagged_and_stable_is_not():
    stable = [1.0, 1.01, 0.99, 1.02, 0.98]
    noisy = [1.0, 1.5, 0.7, 1.3, 0.6]
    assert not stats.is_unstable(stats.summarize(stable))
    assert stats.spread_warning("x", stats.summarize(stable)) is None
    assert stats.is_unstable(stats.summarize(noisy))
    msg = stats.spread_warning("depth-03/int8", stats.summarize(noisy))
    assert "depth-03/int8" in msg and "CV" in msg
    # the threshold is a parameter
    assert not stats.is_unstable(stats.summarize(noisy), max_cv=0.5)


def test_throughput_and_speedup():
    t = stats.throughput(batch=8, seq=128, mean_s=0.02)
    assert t["sequences_per_s"] == pytest.approx(400.0)
    assert t["tokens_per_s"] == pytest.approx(51200.0)
    assert stats.speedup(0.03, 0.01) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        stats.speedup(0.0, 1.0)


@pytest.mark.parametrize("n,rounds", [(1, 1), (2, 3), (5, 5), (6, 3), (7, 2), (10, 4), (3, 8)])
def test_interleaved_order_is_a_permutation_per_round(n, rounds):
    orders = stats.interleaved_order(n, rounds)
    assert len(orders) == rounds
    for order in orders:
        assert sorted(order) == list(range(n))
    if n > 1 and rounds > 1:
        assert orders[0] != orders[1]  # actually interleaved, not the same order every round


def test_interleaved_order_is_a_latin_square_with_enough_rounds():
    n = 5
    orders = stats.interleaved_order(n, n)
    for c in range(n):
        assert sorted(order.index(c) for order in orders) == list(range(n))


def test_interleaved_order_centres_every_config():
    n, rounds = 12, 3
    orders = stats.interleaved_order(n, rounds)
    centre = (n - 1) / 2
    for c in range(n):
        mean_pos = sum(order.index(c) for order in orders) / rounds
        assert abs(mean_pos - centre) <= n / (2 * rounds) + 1e-9, (c, mean_pos)


def _simulate_drift(orders, true, runs=20, drift=0.002):
    """Samples per config of a machine that slows down linearly (``drift`` per run) over time."""
    samples = {c: [[] for _ in orders] for c in range(len(true))}
    clock = 0
    for r, order in enumerate(orders):
        for c in order:
            for _ in range(runs):
                samples[c][r].append(true[c] * (1 + drift * clock))
                clock += 1
    return samples


def _worst_ratio_error(latency, true):
    return max(abs((latency[0] / latency[c]) / (true[0] / true[c]) - 1) for c in range(1, len(true)))


def test_interleaving_cancels_drift_that_biases_sequential_measurement():
    """Measuring configurations in a fixed order makes the last one look slower on a drifting machine;
    interleaved rounds + the balanced median keep every ratio (speedup) at the truth."""
    true = [10.0, 8.0, 6.0, 4.0, 2.0]  # latency of depth 5..1 (linear in depth)
    n = len(true)
    for rounds in (n, 2 * n, 3):
        sequential = _simulate_drift([list(range(n))] * rounds, true)
        interleaved = _simulate_drift(stats.interleaved_order(n, rounds), true)
        seq_err = _worst_ratio_error({c: stats.balanced_median(s) for c, s in sequential.items()}, true)
        bal_err = _worst_ratio_error({c: stats.balanced_median(s) for c, s in interleaved.items()}, true)
        assert seq_err > 0.05  # drift alone fakes a >5% error in a speedup
        if rounds % n == 0:  # every config visits every position equally often: exact cancellation
            assert bal_err < 1e-9, (rounds, bal_err)
        else:  # 3 rounds of 5 configs: positions only nearly balanced
            assert bal_err < seq_err / 3, (rounds, bal_err, seq_err)


def test_balanced_median_ignores_outliers_within_a_round():
    rounds = [[1.0, 1.0, 1.0, 50.0], [1.2, 1.2, 1.2, 1.2]]
    assert stats.balanced_median(rounds) == pytest.approx(1.1)
    with pytest.raises(ValueError):
        stats.balanced_median([[]])


def test_linear_fit_and_predicted_speedups():
    depths = [1, 2, 3, 4, 5, 6]
    lat = [1.0 + 2.0 * d for d in depths]  # exactly linear
    fit = stats.linear_fit(depths, lat)
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)
    pred = stats.predicted_speedups(depths, lat)
    assert pred[6]["measured"] == pytest.approx(1.0)
    assert pred[3]["measured"] == pytest.approx(13 / 7)
    assert all(abs(p["rel_diff"]) < 1e-9 for p in pred.values())
    bent = lat[:-1] + [lat[-1] * 1.3]  # full depth 30% slower than the line: speedups look larger
    pred = stats.predicted_speedups(depths, bent)
    assert max(abs(p["rel_diff"]) for p in pred.values()) > 0.1
    with pytest.raises(ValueError):
        stats.linear_fit([1.0], [2.0])


def test_flatten_keeps_measurement_order():
    assert stats.flatten([[1, 2], [], [3]]) == [1.0, 2.0, 3.0]
