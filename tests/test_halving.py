"""Successive halving inside a GLP step: the bootstrap rule, the greedy loop with fake rungs, and the real CLI on a
tiny model (survivors end exactly as in full GLP; a killed run resumes to the same log)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from glp_bench.prune.halving import behind, default_halving, rung_label
from glp_bench.prune.search import greedy_search, sequential, step_pool

from .conftest import assert_clean_error, build_tiny_model, run_cli


def test_behind_drops_only_candidates_clearly_below_the_leader():
    rng = np.random.default_rng(0)
    lead = rng.normal(0.5, 0.02, 1000)
    draws = {0: lead, 1: lead - 0.1, 2: lead - 0.001 + rng.normal(0, 0.02, 1000), 3: np.zeros(1000)}
    out = behind(draws, 0)
    assert set(out) == {1, 3} and all(v < 0.05 for v in out.values())
    # ties at the top are noise: two majority-class predictors (MCC 0 everywhere) both go on
    assert behind({0: np.zeros(50), 1: np.zeros(50)}, 0) == {}
    assert default_halving("fast") == "on" and default_halving("paper") == "off"
    assert rung_label(1 / 3) == "1/3" and rung_label(2 / 3) == "2/3"


def _fake(importance):
    """Rung scores grow with the budget share; a candidate's final score is the additive importance score."""
    calls = []

    def full(removed, c):
        return sum(v for k, v in importance.items() if k not in {*removed, c})

    def score_rung(removed, cands, start, stop):
        for c in cands:
            calls.append((tuple(removed), c, start, stop))
            yield c, {"score": full(removed, c) * stop, "loss": 1.0, "seconds": 1.0}

    def cut(step, rung, records):
        best = max(r["score"] for r in records.values())
        leader = max(records, key=lambda c: (records[c]["score"], c))
        return {"leader": leader, "stopped": {c: 0.0 for c, r in records.items() if r["score"] < best - 0.5}}

    return full, score_rung, cut, calls


def test_greedy_search_with_halving_stops_losers_early_and_chooses_among_survivors():
    importance = {0: 5.0, 1: 0.5, 2: 3.0, 3: 0.1, 4: 4.0, 5: 1.0}
    full, score_rung, cut, calls = _fake(importance)
    log: list[dict] = []
    order = greedy_search(range(6), 3, sequential(lambda r, c: {"score": full(r, c)}), log,
                          halving=((1 / 3, 2 / 3), score_rung, cut))
    assert order == greedy_search(range(6), 3, sequential(lambda r, c: {"score": full(r, c)}), [])  # same order
    compute = sum(stop - start for *_, start, stop in calls)
    assert compute < 0.7 * (6 + 5 + 4)  # the losers stopped at 1/3
    step = log[0]
    assert len(step["candidates"]) == 6 and set(step_pool(step)) < set(range(6))
    stopped = {k: v for k, v in step["candidates"].items() if "stopped_at" in v}
    assert stopped and all(v["stopped_at"] in ("1/3", "2/3") for v in stopped.values())
    assert step["halving"]["rungs"][0]["leader"] == order[0]
    # survivors' seconds count every rung they trained
    assert all(v["seconds"] == 3.0 for k, v in step["candidates"].items() if k not in stopped)
    # resumable: a log cut in the middle of a rung gives the same log, without redoing finished rung records
    partial = json.loads(json.dumps(log[:1]))
    partial[0]["chosen"], partial[0]["candidates"] = None, {}
    rung = partial[0]["halving"]["rungs"][0]
    rung["stopped"], rung["leader"] = None, None
    rung["candidates"] = dict(list(rung["candidates"].items())[:3])
    del partial[0]["halving"]["rungs"][1:]
    partial[0].pop("noise", None)
    _, score_rung2, cut2, calls2 = _fake(importance)
    again = greedy_search(range(6), 3, sequential(lambda r, c: {"score": full(r, c)}), partial,
                          halving=((1 / 3, 2 / 3), score_rung2, cut2))
    assert again == order and partial == log
    assert [c for (r, c, s, e) in calls2 if r == () and e == 1 / 3] == [3, 4, 5]


@pytest.fixture(scope="module")
def tiny6(tmp_path_factory):
    return build_tiny_model("bert", tmp_path_factory.mktemp("m") / "bert6", layers=6)


def _args(model, data, run_dir, halving):
    return ["prune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
            "--search-epochs", "3", "--search-samples", "0", "--lr", "1e-3", "--strategy", "glp", "--min-depth", "4",
            "--run", str(run_dir), "--device", "cpu", "--search-halving", halving]


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def _same(rec):
    return {k: v for k, v in rec.items() if k not in ("seconds",)} | {
        "seeds": {s: {k: v for k, v in r.items() if k != "seconds"} for s, r in rec["seeds"].items()}}


def test_halving_survivors_end_exactly_as_in_full_glp_and_a_killed_run_resumes(tiny6, cola_dir, tmp_path):
    off, on, killed = tmp_path / "off", tmp_path / "on", tmp_path / "killed"
    assert run_cli(*_args(tiny6, cola_dir, off, "off")).returncode == 0
    proc = run_cli(*_args(tiny6, cola_dir, on, "on"))
    assert proc.returncode == 0, proc.stderr
    a, b = _manifest(off), _manifest(on)
    assert b["config"]["search_halving"] == "on" and "halving" not in a["strategies"]["glp"]["steps"][0]
    step_off, step_on = a["strategies"]["glp"]["steps"][0], b["strategies"]["glp"]["steps"][0]
    assert [r["at"] for r in step_on["halving"]["rungs"]] == ["1/3", "2/3"]
    survivors = step_pool(step_on)
    assert survivors and set(step_on["candidates"]) == set(step_off["candidates"])
    for layer in survivors:  # paused twice and resumed: bit for bit the uninterrupted fine-tune's score
        assert _same(step_on["candidates"][str(layer)]) == _same(step_off["candidates"][str(layer)])
    if step_off["chosen"] in survivors:
        assert step_on["chosen"] == step_off["chosen"]
    assert not list(on.glob("search/*/paused/*"))  # paused states are removed once used
    # kill -9 while the halving's rungs are being filled, then resume: the same search log
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "glp_bench.cli", *_args(tiny6, cola_dir, killed, "on")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            rungs = _manifest(killed)["strategies"]["glp"]["steps"][0]["halving"]["rungs"]
            if len(rungs) == 2 and rungs[1]["candidates"]:
                break
        except (FileNotFoundError, KeyError, IndexError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    resumed = run_cli(*_args(tiny6, cola_dir, killed, "on"))
    assert resumed.returncode == 0, resumed.stderr
    strip = lambda steps: [{**s, "candidates": {k: _same(v) for k, v in s["candidates"].items()},  # noqa: E731
                            "halving": {"rungs": [{**r, "candidates": {k: _same(v) for k, v in r["candidates"].items()}}
                                                  for r in s["halving"]["rungs"]]}} for s in steps]
    assert strip(_manifest(killed)["strategies"]["glp"]["steps"]) == strip(b["strategies"]["glp"]["steps"])
    # bad input: an unknown value, or another value on an existing run: one line, exit 2, the run untouched
    proc = run_cli(*_args(tiny6, cola_dir, tmp_path / "x", "maybe"))
    assert proc.returncode == 2 and "--search-halving" in proc.stderr and "Traceback" not in proc.stderr
    before = _manifest(on)
    assert_clean_error(run_cli(*_args(tiny6, cola_dir, on, "off")), "other arguments")
    assert _manifest(on) == before


def test_the_rungs_rank_by_the_margin_on_two_classes():
    from glp_bench.data.resolve import get_task
    from glp_bench.prune.halving import rung_measure, rung_outputs

    cola = get_task("cola")
    logits = np.array([[0.0, 0.1], [0.0, 0.2], [0.0, 0.3], [0.0, 0.4]])  # all predict class 1: MCC 0
    margin = rung_outputs(cola, logits)
    assert margin.dtype == np.float32 and margin.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    name, metric = rung_measure(cola)
    assert name == "roc_auc" and metric(margin, np.array([0, 0, 1, 1])) == 1.0
    assert metric(margin, np.array([1, 1, 0, 0])) == 0.0
    assert cola.compute(logits, [0, 0, 1, 1])["matthews_correlation"] == 0.0  # what the step's metric sees
    stsb = get_task("stsb")
    assert rung_measure(stsb)[0] == stsb.main_metric and rung_outputs(stsb, np.array([[0.5]])).tolist() == [0.5]


# --- the recipe sweep's first wave ------------------------------------------------------------------------

def _sweep_fakes(fake):
    calls = []

    def scores(jobs):  # the whole budget at once (no halving)
        for lr, _ in jobs:
            calls.append((lr, 0.0, 1.0))
            yield lr, {"score": fake[lr], "loss": 0.5, "seconds": 3.0}

    def score_rung(removed, lrs, start, stop):
        for lr in lrs:
            calls.append((lr, start, stop))
            yield lr, {"score": fake[lr] * stop, "loss": 0.5, "seconds": 1.0}

    def cut(step, rung, records):
        best = max(r["score"] for r in records.values())
        leader = max(records, key=lambda c: (records[c]["score"], c))
        return {"leader": leader, "stopped": {c: 0.01 for c, r in records.items() if r["score"] < best - 0.05}}

    return scores, score_rung, cut, calls


@pytest.mark.parametrize("fake, stopped, best", [
    ({2e-5: 0.0, 5e-5: 0.1, 1e-4: 0.3, 2e-4: 0.2}, {"5e-05": "1/3", "0.0002": "2/3"}, 1e-4),
    ({2e-5: 0.2, 5e-5: 0.3, 1e-4: 0.1, 2e-4: 0.0}, {"0.0001": "1/3", "0.0002": "1/3"}, 5e-5),  # then 2e-5, whole
])
def test_the_sweep_halves_its_first_wave_and_chooses_as_the_full_sweep(tmp_path, fake, stopped, best):
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.sweep import run_sweep

    plan = make_plan("cola", "m", None, ["glp"], pooling="cls")  # cls: no hub lookup for "m"
    full_scores, *_ = _sweep_fakes(fake)
    plain = RunDir(tmp_path / "plain").create(plan.config(6))
    assert run_sweep(plain, plan, full_scores, plain.save) == best
    scores, score_rung, cut, calls = _sweep_fakes(fake)
    run = RunDir(tmp_path / "r").create(plan.config(6))
    assert run_sweep(run, plan, scores, run.save, ((1 / 3, 2 / 3), score_rung, cut)) == best
    rec = run.data["recipe"]
    assert {k: p["stopped_at"] for k, p in rec["points"].items() if "stopped_at" in p} == stopped
    assert all(p["lr"] == float(k) for k, p in rec["points"].items())
    survivors = {k for k in rec["points"] if k not in stopped}
    assert {k: rec["points"][k]["score"] for k in survivors} == {k: plain.data["recipe"]["points"][k]["score"]
                                                                 for k in survivors}
    chosen, plain_chosen = rec["chosen"], plain.data["recipe"]["chosen"]
    assert chosen["lr"] == plain_chosen["lr"] and rec["skipped"] == plain.data["recipe"]["skipped"]
    assert chosen["decided_by"] == ("successive halving" if len(survivors) == 1 else plain_chosen["decided_by"])
    assert sum(stop - start for _, start, stop in calls) <= len(plain.data["recipe"]["points"]) - 1  # a budget saved
    assert [r["at"] for r in rec["halving"]["rungs"]][:1] == ["1/3"]
    # a sweep begun without halving (points, no halving log) finishes without it
    scores, score_rung, cut, calls = _sweep_fakes(fake)
    old = RunDir(tmp_path / "old").create(plan.config(6))
    old.data["recipe"] = {"mode": "auto", **plan.sweep, "points": {"0.0002": {"lr": 2e-4, "score": fake[2e-4]}},
                          "chosen": None}
    assert run_sweep(old, plan, scores, old.save, ((1 / 3, 2 / 3), score_rung, cut)) == best
    assert "halving" not in old.data["recipe"] and all((start, stop) == (0.0, 1.0) for _, start, stop in calls)


def test_the_sweep_with_halving_ends_as_the_full_sweep_on_a_tiny_model(tiny6, cola_dir, tmp_path):
    """The real CLI, auto recipe: every lr that trains its whole budget has bit for bit the full sweep's record;
    the paused states are gone at the end."""
    runs = {}
    for halving in ("off", "on"):
        args = _args(tiny6, cola_dir, tmp_path / halving, halving)
        args[args.index("--lr"):args.index("--lr") + 2] = []  # the sweep picks the lr
        args[args.index("--min-depth") + 1] = "5"
        args[args.index("--strategy") + 1] = "top"  # no search: the sweep and two finals
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        runs[halving] = _manifest(tmp_path / halving)["recipe"]
    off, on = runs["off"], runs["on"]
    assert "halving" not in off and on["halving"]["rungs"][0]["at"] == "1/3"
    assert set(on["points"]) == set(off["points"]) == {"5e-05", "0.0001", "0.0002"}
    survivors = [k for k, p in on["points"].items() if "stopped_at" not in p]
    assert survivors and all(_same(on["points"][k]) == _same(off["points"][k]) for k in survivors)
    if off["chosen"]["lr"] in [on["points"][k]["lr"] for k in survivors]:
        assert on["chosen"] == off["chosen"]
    assert (tmp_path / "on" / "search" / "sweep").is_dir() and not list((tmp_path / "on").glob("search/sweep/paused/*"))
