"""benchmarks/bench_main_job.py: the stage table from a run's records (pure), on a hand-made manifest."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "benchmarks"))  # its sibling results_file, as when run as a script
    try:
        spec = importlib.util.spec_from_file_location("bench_main_job", REPO / "benchmarks" / "bench_main_job.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return mod


MANIFEST = {
    "recipe": {"points": {"5e-05": {"seconds": 27.0}, "0.0001": {"seconds": 28.0}}},
    "strategies": {"glp": {"steps": [{"candidates": {"0": {"seconds": 20.0}, "1": {"seconds": 21.0}},
                                      "rescore": {"candidates": {"1": {"seconds": 5.0}}}},
                                     {"candidates": {"1": {"seconds": 15.0}}}]}},
    "models": {"depth-02": {"depth": 2, "strategies": ["glp", "top"], "seeds": {"42": {"train": {"seconds": 40.0}}},
                            "onnx": {"fp32": {"seconds": {"build": 3.0, "validate": 1.0, "score": 2.0}},
                                     "int8": {"seconds": {"build": 30.0, "validate": 1.0, "score": 4.0}}}},
               "depth-03": {"depth": 3, "strategies": ["glp"], "train": {"seconds": 60.0}}},
}


def test_stage_rows_and_totals_from_the_records(bench):
    rows = bench.stage_rows(MANIFEST)
    parts = {r["part"]: (r["count"], r["seconds"]) for r in rows}
    assert parts["recipe sweep"] == (2, 55.0)
    assert parts["GLP step 1 candidates"] == (3, 46.0) and parts["GLP step 2 candidates"] == (1, 15.0)
    assert parts["final depth-03 (glp)"] == (1, 60.0) and parts["final depth-02 (glp+top)"] == (1, 40.0)
    assert parts["depth-02 int8 build"] == (1, 30.0)
    totals = {(t["stage"], t["kind"]): t["seconds"] for t in bench.summary(rows, {"prune": 300.0, "export": 50.0})}
    assert totals[("prune", "GLP candidates")] == 61.0 and totals[("prune", "finals")] == 100.0
    assert totals[("export", "int8 build")] == 30.0 and totals[("export", "fp32 score")] == 2.0
    assert totals[("prune", "other (unrecorded)")] == 300.0 - 55.0 - 61.0 - 100.0
    assert totals[("export", "other (unrecorded)")] == 50.0 - 41.0


def test_halving_compute_counts_the_budget_share_each_candidate_trained(bench):
    assert bench.halving_compute(MANIFEST) is None  # no step was halved
    halved = {"strategies": {"glp": {"steps": [
        {"halving": {"rungs": []}, "candidates": {"0": {"stopped_at": "1/3"}, "1": {"stopped_at": "2/3"}, "2": {}}},
        {"halving": {"rungs": []}, "candidates": {"0": {"stopped_at": "1/3"}, "2": {}}}]}}}
    assert bench.halving_compute(halved) == {"trained": 3.333, "full": 5.0,  # 1/3 + 2/3 + 1 + 1/3 + 1
                                             "saved": round(1 - 3.3333333 / 5, 4)}
