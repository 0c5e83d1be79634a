"""The greedy loop and the baselines, with fake score functions (no models)."""

from __future__ import annotations

import math

import pytest

from glp_bench.core.errors import GlpError
from glp_bench.prune.search import (
    baseline_order,
    choose,
    decided_by,
    default_min_depth,
    greedy_search,
    parse_strategies,
    sequential,
)


def additive(importance: dict[int, float]):
    """Fake score: the sum of the importances of the layers still present (removing the least important
    layer is best), with call counting."""
    calls = []

    def score(removed, candidate):
        calls.append((tuple(removed), candidate))
        gone = {*removed, candidate}
        return {"score": sum(v for k, v in importance.items() if k not in gone)}

    return score, calls


def test_greedy_removes_least_important_layers_in_order():
    importance = {0: 5.0, 1: 0.5, 2: 3.0, 3: 0.1, 4: 4.0, 5: 1.0}
    score, calls = additive(importance)
    log: list[dict] = []
    order = greedy_search(range(6), 3, sequential(score), log)
    assert order == [3, 1, 5]
    assert len(calls) == 6 + 5 + 4  # every remaining layer is a candidate at every step
    assert [s["chosen"] for s in log] == order
    assert log[1]["removed"] == [3] and sorted(map(int, log[1]["candidates"])) == [0, 1, 2, 4, 5]


def test_interaction_is_respected_greedy_not_one_shot():
    """Layer 2 alone is the cheapest to remove, but once it is gone layer 4 becomes useless: the greedy loop
    must re-score after each removal rather than rank layers once."""

    def score(removed, candidate):
        gone = {*removed, candidate}
        value = 10.0 - len(gone)
        if 2 in gone:
            value += 0.5
        if 4 in gone and 2 in gone:
            value += 1.0
        if 4 in gone and 2 not in gone:
            value -= 3.0
        return {"score": value}

    assert greedy_search(range(5), 3, sequential(score), []) == [2, 4]


def test_ties_remove_the_highest_layer():
    assert choose({0: 0.0, 3: 0.0, 2: 0.0}) == 3
    assert choose({0: 0.2, 3: 0.1, 2: 0.2}) == 2
    assert choose({0: float("nan"), 1: -5.0}) == 1
    # equal scores: the lower held-out loss wins before the layer index is looked at
    assert choose({0: {"score": 0.0, "loss": 0.60}, 3: {"score": 0.0, "loss": 0.65}, 2: {"score": 0.0, "loss": 0.61}}) == 0
    assert choose({0: {"score": 0.1, "loss": 0.9}, 3: {"score": 0.0, "loss": 0.1}}) == 0
    assert choose({1: {"score": 0.0, "loss": 0.5}, 4: {"score": 0.0, "loss": 0.5}}) == 4
    # all candidates tie (e.g. CoLA's Matthews correlation 0.0 everywhere): falls back to top dropping
    assert greedy_search(range(6), 3, sequential(lambda r, c: {"score": 0.0}), []) == [5, 4, 3]


def test_decided_by_names_the_rule_that_chose():
    recs = {0: {"score": 0.0, "loss": 0.60}, 3: {"score": 0.0, "loss": 0.65}, 2: {"score": 0.0, "loss": 0.61}}
    assert decided_by(recs, choose(recs)) == "loss"
    recs = {0: {"score": 0.1, "loss": 0.9}, 3: {"score": 0.0, "loss": 0.1}}
    assert decided_by(recs, choose(recs)) == "score"
    recs = {1: {"score": 0.0, "loss": 0.5}, 4: {"score": 0.0, "loss": 0.5}, 2: {"score": 0.0, "loss": 0.7}}
    assert decided_by(recs, choose(recs)) == "layer index"
    assert decided_by({0: 0.0, 3: 0.0}, choose({0: 0.0, 3: 0.0})) == "layer index"  # scores without losses
    assert decided_by({0: 0.2, 3: float("nan")}, 0) == "score"
    assert decided_by({4: {"score": 0.3}}, 4) == "only candidate"


def test_resume_after_crash_equals_uninterrupted_run():
    importance = {0: 2.0, 1: 0.3, 2: 1.5, 3: 0.2, 4: 0.9, 5: 0.4, 6: 3.0, 7: 0.8}
    score, calls_full = additive(importance)
    full_log: list[dict] = []
    expected = greedy_search(range(8), 4, sequential(score), full_log)

    class Crash(Exception):
        pass

    score2, calls = additive(importance)
    budget = {"left": 11}  # crash in the middle of step 2 (8 candidates in step 1)

    def crashing(removed, candidate):
        if budget["left"] == 0:
            raise Crash
        budget["left"] -= 1
        return score2(removed, candidate)

    log: list[dict] = []
    saved = []
    with pytest.raises(Crash):
        greedy_search(range(8), 4, sequential(crashing), log, on_update=lambda: saved.append(repr(log)))
    assert len(log) == 2 and len(log[1]["candidates"]) == 3 and log[1]["chosen"] is None
    n_before = len(calls)
    resumed = greedy_search(range(8), 4, sequential(score2), log)
    assert resumed == expected
    assert log == full_log
    # finished candidates were not scored again
    assert len(calls) - n_before == len(calls_full) - 11


def test_resume_refuses_a_foreign_log():
    log = [{"removed": [], "candidates": {"0": {"score": 1.0}}, "chosen": 0},
           {"removed": [5], "candidates": {}, "chosen": None}]
    with pytest.raises(ValueError, match="removed"):
        greedy_search(range(6), 3, sequential(lambda r, c: {"score": 0.0}), log)


def test_min_depth_one_and_bounds():
    score, _ = additive({i: float(i) for i in range(4)})
    assert greedy_search(range(4), 1, sequential(score), []) == [0, 1, 2]
    assert greedy_search(range(4), 4, sequential(score), []) == []
    with pytest.raises(ValueError):
        greedy_search(range(4), 0, sequential(score), [])


def test_baselines():
    assert baseline_order("top", 6) == [5, 4, 3, 2, 1]
    assert baseline_order("bottom", 6) == [0, 1, 2, 3, 4]
    assert baseline_order("alternate", 6) == [5, 3, 1, 4, 2]
    assert baseline_order("alternate", 12)[:6] == [11, 9, 7, 5, 3, 1]
    r1, r2 = baseline_order("random", 12, seed=1), baseline_order("random", 12, seed=1)
    assert r1 == r2 and len(set(r1)) == 11 and set(r1) <= set(range(12))
    assert baseline_order("random", 12, seed=2) != r1


def test_default_min_depth_and_strategy_parsing():
    assert default_min_depth(12) == 6 and default_min_depth(7) == 4 and default_min_depth(1) == 1
    assert parse_strategies("glp, top,glp") == ["glp", "top"]
    with pytest.raises(GlpError, match="unknown strategy"):
        parse_strategies("glp,greedy")
    assert not math.isnan(choose({1: 1.0}))
