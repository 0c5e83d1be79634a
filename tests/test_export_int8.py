"""The int8 variant: candidates built on a tiny model, the fastest chosen by the latency harness (rule tested
on fake timings), and the exclusion loop that keeps nodes in fp32 when int8 loses too much score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import build_tiny_model, run_cli, write_cola
from tests.test_export import make_run

TINY = {"rounds": 1, "min_runs": 3, "min_time": 0.0}


# --- the selection rule, on fake timings -------------------------------------------------------------------


def r(name, ms, err=None, status="ok", cv=None):
    return {"name": name, "status": status, "latency_ms": ms, "logit_error": err, "cv": cv}


def test_the_fastest_candidate_wins_and_says_why():
    from glp_bench.export.int8_select import choose

    winner, why = choose([r("fused", 8.04), r("unfused-s8", 6.78), r("unfused-s8-channel", 7.10)])
    assert winner == "unfused-s8"
    assert "fastest" in why and "6.78" in why and "unfused-s8-channel" in why


def test_within_the_tie_the_more_accurate_wins_and_failed_ones_never_do():
    from glp_bench.export.int8_select import choose

    # 2% slower but half the logit error: a tie on speed, decided by accuracy
    winner, why = choose([r("fused", 10.2, 0.01), r("unfused-s8", 10.0, 0.02), r("x", 1.0, status="failed")])
    assert winner == "fused" and "2.0% slower than unfused-s8" in why and "smallest logit error vs fp32 (0.01)" in why
    # 5% slower is not a tie
    assert choose([r("fused", 10.5, 0.01), r("unfused-s8", 10.0, 0.02)])[0] == "unfused-s8"
    # unknown error loses a tie; equal errors: the earlier (preferred) candidate
    assert choose([r("a", 10.1), r("b", 10.0, 0.5)])[0] == "b"
    assert choose([r("a", 10.1, 0.1), r("b", 10.0, 0.1)])[0] == "a"
    winner, why = choose([r("a", 10.0), r("b", 10.1)])
    assert winner == "a" and "the fastest" in why and "no logit errors measured" in why


def test_a_noisy_timing_widens_the_tie_to_its_spread():
    """The 3.4% gap of a run whose samples spread 9% (CV) is no evidence; in a quiet run it is."""
    from glp_bench.export.int8_select import choose

    noisy = [r("unfused-s8", 11.74, 0.17, cv=0.088), r("unfused-s8-channel", 12.11, 0.073, cv=0.06)]
    winner, why = choose(noisy)
    assert winner == "unfused-s8-channel" and "within 9% (the timing's spread)" in why
    quiet = [r("unfused-s8", 11.74, 0.17, cv=0.02), r("unfused-s8-channel", 12.11, 0.073, cv=0.014)]
    assert choose(quiet)[0] == "unfused-s8"
    # the spread of a pair, not of a third candidate: fused's noise widens nothing for the others
    assert choose([r("a", 10.0, 0.2, cv=0.01), r("b", 10.5, 0.1, cv=0.01), r("c", 20.0, 0.0, cv=0.5)])[0] == "a"


def test_no_candidate_left_is_a_clear_error():
    from glp_bench.core.errors import ExportError
    from glp_bench.export.int8_select import choose

    with pytest.raises(ExportError, match="fused: boom"):
        choose([{"name": "fused", "status": "failed", "error": "boom"}])


def test_candidates_follow_the_instruction_set():
    from glp_bench.export.int8_select import candidates, weight_type

    vnni = [c.name for c in candidates("avx512_vnni")]
    assert vnni == ["fused", "fused-tensor", "unfused-s8", "unfused-s8-channel"]
    assert "unfused-u8" in [c.name for c in candidates("avx2")]  # no VNNI: u8s8 may saturate, try u8u8
    assert "unfused-u8" not in [c.name for c in candidates("arm64")]
    fused = candidates("avx2")[0]
    assert weight_type(fused, "avx2") == "u8u8" and weight_type(fused, "avx512_vnni") == "u8s8"


# --- candidates built and timed on a tiny model ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory):
    """(model.onnx of a tiny 2-layer bert, its config, calibration batches from a tiny train split)."""
    from transformers import AutoConfig

    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task
    from glp_bench.export.quant_exclude import calibration_batches
    from glp_bench.export.stage import export_fp32
    from glp_bench.prune.models import load_tokenizer

    root = tmp_path_factory.mktemp("int8")
    model_dir = build_tiny_model("bert", root / "model", layers=2, seed=3)
    export_fp32(model_dir, root / "onnx", 18)
    task = get_task("cola")
    data = load_task_data(task, write_cola(root / "CoLA", n_train=24, n_dev=16))
    calib = calibration_batches(data["train"], load_tokenizer(str(model_dir)), task, 128, n=24, batch_size=8)
    return root / "onnx" / "model.onnx", AutoConfig.from_pretrained(root / "onnx"), calib


def test_every_candidate_is_built_timed_and_the_winner_shipped(tiny_fp32, tmp_path):
    import onnx

    from glp_bench.core.jsonio import sha256_file
    from glp_bench.export.int8_select import MeasureSpec, select

    fp32, config, calib = tiny_fp32
    dst = tmp_path / "model.int8.onnx"
    rec = select(fp32, dst, config, "avx2", calib=calib, spec=MeasureSpec(seq=32, **TINY))
    sel = rec["selection"]
    cands = {c["name"]: c for c in sel["candidates"]}
    assert list(cands) == ["fused", "fused-tensor", "unfused-s8", "unfused-s8-channel", "unfused-u8"]
    for c in cands.values():  # built, compared with fp32 on train inputs, timed by the harness
        assert c["status"] == "ok", c
        assert c["latency_ms"] > 0 and 0 < c["logit_error"] < 1
    assert sel["mode"] == "measured" and sel["winner"] == rec["candidate"] in cands and sel["why"]
    assert sel["measured_with"]["seq"] == 32 and sel["calibration_batches"] == len(calib)
    assert cands["unfused-u8"]["weights"] == "u8u8" and cands["unfused-s8"]["weights"] == "u8s8"
    # the shipped file is the winner's graph: QAttention only for the fused recipes
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert ("QAttention" in ops) == (rec["source"] == "fp32-opt")
    assert "MatMulInteger" in ops
    # a forced candidate is built without timing; per channel really differs from per tensor
    forced = tmp_path / "forced.onnx"
    rec2 = select(fp32, forced, config, "avx2", choice="unfused-s8-channel", calib=calib)
    assert rec2["selection"]["mode"] == "forced" and rec2["candidate"] == "unfused-s8-channel"
    assert "latency_ms" not in rec2["selection"]["candidates"][0]
    rec3 = select(fp32, tmp_path / "t.onnx", config, "avx2", choice="unfused-s8", calib=calib)
    assert sha256_file(forced) != sha256_file(tmp_path / "t.onnx")
    assert rec3["selection"]["candidates"][0]["logit_error"] != rec2["selection"]["candidates"][0]["logit_error"]


def test_a_candidate_that_fails_to_build_is_recorded_and_the_others_kept(tiny_fp32, tmp_path, monkeypatch):
    from glp_bench.export import int8_select

    real = int8_select.build

    def build(cand, *a, **k):
        if cand.graph == "fused":
            raise RuntimeError("fusion exploded\nsecond line")
        return real(cand, *a, **k)

    monkeypatch.setattr(int8_select, "build", build)
    fp32, config, calib = tiny_fp32
    fake = {"unfused-s8": 2.0, "unfused-s8-channel": 1.0}
    rec = int8_select.select(fp32, tmp_path / "m.onnx", config, "avx512_vnni", calib=calib,
                             timer=lambda paths, spec: {n: {"latency_ms": fake[n]} for n in paths})
    cands = {c["name"]: c for c in rec["selection"]["candidates"]}
    assert cands["fused"]["status"] == "failed" and cands["fused"]["error"] == "RuntimeError: fusion exploded"
    assert rec["candidate"] == "unfused-s8-channel"  # the fake timings decide among the built ones
    assert (tmp_path / "m.onnx").is_file()


# --- the exclusion loop ------------------------------------------------------------------------------------


def test_exclusion_steps_and_stop_rule_on_fake_scores():
    from glp_bench.export.quant_exclude import exclude_until_within, rank_by_sensitivity, steps

    assert steps(0) == [] and steps(1) == [1] and steps(5) == [1, 2, 4, 5] and steps(8) == [1, 2, 4, 8]
    # error falls by each excluded node's weight: b is the most sensitive, then d
    weight = {"a": 0.0, "b": 0.5, "c": 0.1, "d": 0.3}
    ranked = rank_by_sensitivity(list(weight), lambda ex: 1.0 - sum(weight[n] for n in ex))
    assert [n for n, _ in ranked] == ["b", "d", "c", "a"] and ranked[0][1] == pytest.approx(0.5)
    # score: fp32 0.50 minus 2 points per quantized sensitive node; budget 1 point
    sensitive = {"b", "d"}
    def score_with(ex):
        return 0.50 - 0.02 * len(sensitive - set(ex))
    out = exclude_until_within(["b", "d", "c", "a"], score_with, 0.50, 1.0, start_score=0.46)
    assert out["excluded"] == ["b", "d"] and out["within_budget"] and out["score"] == pytest.approx(0.50)
    assert [s["excluded"] for s in out["steps"]] == [1, 2]
    # never within budget: everything is excluded, and it says so
    out = exclude_until_within(["b", "d"], lambda ex: 0.40, 0.50, 1.0, start_score=0.40)
    assert out["excluded"] == ["b", "d"] and not out["within_budget"]
    # already within budget: nothing to do
    assert exclude_until_within(["b"], score_with, 0.50, 5.0, start_score=0.46)["steps"] == []


def test_exclusion_loop_on_a_tiny_model_with_a_forced_score_drop(tiny_fp32, tmp_path):
    """One weight of one layer is an outlier (50, the others ~0.02), so per-tensor int8 rounds that layer's
    other weights to zero. The dev score is forced to fall with the int8 model's real logit error on
    held-out inputs: the loop must find that node on train inputs and keep it (and few others) in fp32."""
    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification

    from glp_bench.export.int8_select import CANDIDATES, MeasureSpec, build, fp32_reference, mean_abs_error
    from glp_bench.export.quant_exclude import keep_score
    from glp_bench.export.stage import export_fp32

    _, config, calib = tiny_fp32
    model_dir = build_tiny_model("bert", tmp_path / "model", layers=2, seed=3)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.bert.encoder.layer[1].intermediate.dense.weight[0, 0] = 50.0
    model.save_pretrained(model_dir)
    export_fp32(model_dir, tmp_path / "onnx", 18)
    fp32 = tmp_path / "onnx" / "model.onnx"
    rng = np.random.default_rng(0)
    held_out = [{"input_ids": rng.integers(1, config.vocab_size, (4, 20)), "attention_mask": np.ones((4, 20), dtype=np.int64),
                 "token_type_ids": np.zeros((4, 20), dtype=np.int64)}]
    ref = fp32_reference(fp32, held_out)
    dst = tmp_path / "model.int8.onnx"
    build(CANDIDATES["unfused-s8"], fp32, dst, config, "avx512_vnni")
    err0 = mean_abs_error(dst, held_out, ref)
    assert err0 > 0

    def score(path):  # 5 points below fp32 at the full int8 error, none at zero error
        return 0.60 - 0.05 * mean_abs_error(path, held_out, ref) / err0

    before = score(dst)
    out = keep_score("unfused-s8", fp32, dst, config, "avx512_vnni", calib, fp32_score=0.60, int8_score=before,
                     budget=2.5, score_fn=score, spec=MeasureSpec(seq=32, **TINY))
    assert out["before"]["drop_points"] == pytest.approx(5.0)
    assert out["within_budget"] and out["after"]["drop_points"] <= 2.5
    assert out["after"]["score"] == pytest.approx(score(dst))  # dst is the final model
    assert out["before"]["latency_ms"] > 0 and out["after"]["latency_ms"] > 0
    assert out["calibration"]["split"] == "train"
    excluded = [e["node"] for e in out["excluded"]]
    assert excluded == ["/bert/encoder/layer.1/intermediate/dense/MatMul"]  # the planted outlier, alone
    assert out["steps"][0]["excluded"] == 1 and len(out["steps"]) == 1 and out["nodes_considered"] > 10
    top = [e["sensitivity"] for e in out["sensitivity_top"]]
    assert top == sorted(top, reverse=True) and out["excluded"][0]["sensitivity"] == top[0] > 0
    # the excluded nodes are still fp32 nodes of the shipped graph; the others were quantized
    graph = onnx.load(str(dst)).graph
    names = {n.name: n.op_type for n in graph.node}
    assert names[excluded[0]] == "MatMul"
    assert any(n.op_type == "MatMulInteger" for n in graph.node)



def test_a_budget_only_the_fp32_graph_meets_is_recorded_as_no_int8_left(tiny_fp32, tmp_path):
    """The score is over budget while any node is int8 (a real logit error vs fp32 on held-out inputs): the
    search ends with every node in fp32, and the record, per step and in all, counts the int8 nodes left, so the
    report can say the int8 file is the fp32 graph."""
    import onnx

    from glp_bench.export import int8_select as sel
    from glp_bench.export.int8 import check_score
    from glp_bench.export.quant_exclude import smallest_int8_drop

    fp32, config, calib = tiny_fp32
    ref = sel.fp32_reference(fp32, calib)
    dst = tmp_path / "model.int8.onnx"
    sel.build(sel.CANDIDATES["unfused-s8"], fp32, dst, config, "avx512_vnni")
    assert sel.mean_abs_error(dst, calib, ref) > 1e-4

    def decide(path, variant):  # 3 points below fp32 while any logit moves
        return 0.60 - (0.03 if variant == "int8" and sel.mean_abs_error(path, calib, ref) > 1e-4 else 0.0)

    qe = check_score("unfused-s8", fp32, dst, config, "avx512_vnni", calib, 1.0, decide, {"split": "train-heldout"},
                     spec=sel.MeasureSpec(seq=32, **TINY))
    assert qe["within_budget"] and qe["status"] == "within budget only as fp32 (every node excluded)"
    assert qe["int8_nodes_left"] == 0 and len(qe["excluded"]) == qe["nodes_considered"]
    left = [s["int8_nodes_left"] for s in qe["steps"]]
    assert left[-1] == 0 and left[0] > 0 and left == sorted(left, reverse=True)
    assert not any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in onnx.load(str(dst)).graph.node)
    assert smallest_int8_drop(qe) == pytest.approx(3.0)  # every model with int8 nodes lost the 3 points
    assert smallest_int8_drop(qe, [{"drop_points": 1.8}]) == pytest.approx(1.8)


@pytest.mark.parametrize("name", ["unfused-s8-channel", "unfused-u8"])
def test_the_weight_cache_writes_the_same_bytes_as_ort_for_every_exclusion(tiny_fp32, tmp_path, name):
    """``quant_cache`` re-quantizes with memoized weights: each file must be byte for byte what
    ``quantize_dynamic`` writes, for any set of excluded nodes, in any order (hits and misses mixed)."""
    from glp_bench.core.jsonio import sha256_file
    from glp_bench.export.int8_select import CANDIDATES, prepare_source, quantize
    from glp_bench.export.quant_cache import WeightCache
    from glp_bench.export.quant_exclude import quantizable_nodes

    fp32, config, _ = tiny_fp32
    cand = CANDIDATES[name]
    source = prepare_source(cand, fp32, tmp_path, config)
    nodes = quantizable_nodes(source)
    gemm = [n for n in nodes if "Gemm" in n]
    trials = [[], [nodes[3]], [], nodes[:5], [nodes[-1], *gemm], [nodes[3]]]
    cache = WeightCache()
    for i, excluded in enumerate(trials):
        quantize(cand, source, tmp_path / f"plain{i}.onnx", config, "avx512", excluded)
        quantize(cand, source, tmp_path / f"cached{i}.onnx", config, "avx512", excluded, cache=cache)
        assert sha256_file(tmp_path / f"plain{i}.onnx") == sha256_file(tmp_path / f"cached{i}.onnx"), (i, excluded)
    assert sha256_file(tmp_path / "plain0.onnx") != sha256_file(tmp_path / "plain3.onnx")  # exclusions matter
    assert cache.hits > cache.misses > 0 and len(cache.inferred) == 1  # one re-inferred graph for every trial


def test_the_ranking_skips_only_nodes_the_quantizer_leaves_alone(tiny_fp32, tmp_path):
    """Nodes the quantized graph holds unchanged get 0 without a trial; the ranking equals the one that tries
    every node through plain ``quantize_dynamic``."""
    from glp_bench.export.int8_select import (
        CANDIDATES,
        build,
        fp32_reference,
        mean_abs_error,
        prepare_source,
        quantize,
    )
    from glp_bench.export.quant_cache import WeightCache, unquantized_nodes
    from glp_bench.export.quant_exclude import quantizable_nodes, rank_by_sensitivity

    fp32, config, calib = tiny_fp32
    cand = CANDIDATES["unfused-s8-channel"]
    source = prepare_source(cand, fp32, tmp_path, config)
    dst = tmp_path / "int8.onnx"
    build(cand, fp32, dst, config, "avx512", workdir=tmp_path)
    nodes = quantizable_nodes(source)
    as_is = unquantized_nodes(source, dst) & set(nodes)
    assert as_is and all("MatMul" in n for n in as_is) and len(as_is) < len(nodes)  # attention's QK^T and AV
    ref = fp32_reference(fp32, calib)
    cache, tried = WeightCache(), []

    def error_with(excluded, cache=None):
        tried.append(excluded)
        quantize(cand, source, tmp_path / "t.onnx", config, "avx512", excluded, cache=cache)
        return mean_abs_error(tmp_path / "t.onnx", calib, ref)

    fast = rank_by_sensitivity(nodes, lambda ex: error_with(ex, cache), as_is)
    assert not any(set(ex) & as_is for ex in tried)
    full = rank_by_sensitivity(nodes, error_with)
    assert fast == full

def test_only_candidates_the_exclusion_slowdown_could_let_win_are_tried():
    from glp_bench.export.int8 import slower_but_maybe_faster

    sel = {"candidates": [r("a", 10.0), r("b", 10.2), r("c", 12.0), r("d", 14.0), r("e", 11.0, status="failed")]}
    qe = {"before": {"latency_ms": 20.0}, "after": {"latency_ms": 26.0}}  # 1.3x slower with its fp32 nodes
    assert slower_but_maybe_faster(sel, "a", qe) == ["b", "c"]  # d: 1.4x, beyond; e: failed
    assert slower_but_maybe_faster(sel, "a", {"before": {"latency_ms": 20.0}, "after": {"latency_ms": 20.4}}) == []
    assert slower_but_maybe_faster(sel, "a", {"before": {}, "after": {"latency_ms": 26.0}}) == []  # not timed
    # a per-tensor twin of the winner or of a candidate tried is skipped; another graph or weight type is not
    real = {"candidates": [r("unfused-s8-channel", 10.0), r("unfused-s8", 10.1), r("unfused-u8", 11.0),
                           r("fused-tensor", 11.8), r("fused", 12.0)]}
    assert slower_but_maybe_faster(real, "unfused-s8-channel", qe) == ["unfused-u8", "fused"]
    assert slower_but_maybe_faster(real, "unfused-s8", qe) == ["unfused-s8-channel", "unfused-u8", "fused"]
    # fused itself out of reach (1.2 * 1.03 > 1.22): its per-tensor twin is tried
    assert slower_but_maybe_faster(real, "unfused-s8-channel", {**qe, "after": {"latency_ms": 24.4}}) == \
        ["unfused-u8", "fused-tensor"]


def _int8_weights(path) -> bool:
    import onnx

    return any(i.data_type == onnx.TensorProto.INT8 for i in onnx.load(str(path)).graph.initializer)


@pytest.mark.parametrize("excluded_ms, switched", [(2.0, True), (1.1, False)])
def test_a_candidate_that_keeps_the_score_as_built_replaces_a_slowed_winner(tiny_fp32, tmp_path, excluded_ms,
                                                                           switched):
    """The fastest candidate (u8s8 per channel) loses 10 points unless every node stays fp32, which makes it 2x
    slower; u8u8 weights keep the score as built. It ships when it times faster than the excluded winner, timed
    side by side (``excluded_ms``)."""
    import onnx

    from glp_bench.export.int8 import build_int8, int8_notes
    from glp_bench.export.int8_select import MeasureSpec

    fp32, config, calib = tiny_fp32
    work = tmp_path / "onnx"
    work.mkdir()
    (work / "model.onnx").write_bytes(fp32.read_bytes())
    speed = {"unfused-s8-channel": 1.0, "unfused-s8": 1.1, "unfused-u8": 1.2, "fused": 1.3, "fused-tensor": 1.3,
             "before": 1.0, "after": 2.0, "excluded": excluded_ms}
    decided = []

    def decide(path, variant):  # 10 points below fp32 while any weight is int8
        decided.append(variant)
        return 0.50 if variant == "int8" and _int8_weights(path) else 0.60

    rec = build_int8(work / "model.onnx", config, "avx2", choice="auto", max_quant_drop=1.0, model="depth-02",
                     chosen={}, calib=calib, decide=decide, spec=MeasureSpec(seq=32, **TINY),
                     timer=lambda paths, spec: {n: {"latency_ms": speed[n]} for n in paths})
    sw = rec["selection"]["switched"]
    assert sw["from"] == "unfused-s8-channel" and [t["name"] for t in sw["tried"]] == ["unfused-u8"]
    assert sw["tried"][0]["within_budget"] and sw["tried"][0]["drop_points"] == pytest.approx(0.0)
    dst = work / "model.int8.onnx"
    notes = int8_notes({"depth-02": {"depth": 2, "onnx": {"int8": {"build": rec}}}}, ["depth-02"])
    if switched:
        assert rec["candidate"] == sw["to"] == "unfused-u8" and rec["weights"] == "u8u8"
        qe = rec["quant_exclusion"]
        assert qe["excluded"] == [] and qe["drop_points"] == pytest.approx(0.0) and qe["instead_of"]["excluded"] > 10
        assert not _int8_weights(dst) and any(n.op_type == "MatMulInteger" for n in onnx.load(str(dst)).graph.node)
        assert any("unfused-u8 shipped instead of unfused-s8-channel" in n for n in notes)
    else:  # u8 keeps the score but times slower than the winner with its fp32 nodes: the winner stays
        assert rec["candidate"] == "unfused-s8-channel" and sw["to"] is None and rec["quant_exclusion"]["excluded"]
        assert sw["tried"][0]["latency_ms"] == 1.2 and sw["tried"][0]["excluded_latency_ms"] == 1.1
        assert "MatMul" in {n.op_type for n in onnx.load(str(dst)).graph.node}  # the winner's file, fp32 nodes in it
        assert any("no candidate kept the score without fp32 nodes faster" in n for n in notes)
    assert not list(work.glob(".int8-*"))  # no temporary folder left


def test_report_notes_show_the_excluded_nodes_and_before_after():
    from glp_bench.export.int8 import int8_notes

    qe = {"budget_points": 1.0, "fp32_score": 0.45, "within_budget": True,
          "decided_on": {"split": "train-heldout", "examples": 1283},
          "excluded": [{"node": f"n{i}", "sensitivity": 1.0 / (i + 1)} for i in range(6)],
          "before": {"score": 0.41, "latency_ms": 6.8}, "after": {"score": 0.445, "latency_ms": 7.3}}
    models = {"depth-06": {"depth": 6, "onnx": {"int8": {"build": {"candidate": "unfused-s8", "quant_exclusion": qe,
                                                                   "selection": {"mode": "forced"}}}}},
              "depth-04": {"depth": 4, "onnx": {"int8": {"build": {"candidate": "fused", "quant_exclusion": {
                  "status": "over budget", "reason": "no calibration inputs (empty train split)",
                  "drop_points": 2.5, "budget_points": 1.0, "excluded": []}}}}}}
    notes = int8_notes(models, ["depth-04", "depth-06"])
    assert notes[0] == "int8 (depth-06): unfused-s8 (chosen with --int8-candidate)"
    assert notes[1] == ("int8 (depth-06): 6 node(s) kept in fp32 for --max-quant-drop 1 (n0, n1, n2, n3 and 2 more): "
                        "held-out train (1283 examples) score 0.4100 -> 0.4450 (fp32 0.4500); latency 6.8 -> 7.3 ms")
    # a record from before the decision moved off dev says so
    assert notes[2].startswith("int8 (depth-04): 2.50 points below fp32 on dev, over the --max-quant-drop budget 1")
    # met only with every node in fp32: the note says the file is the fp32 graph and which budget would keep int8
    all_fp32 = {**qe, "int8_nodes_left": 0, "excluded": qe["excluded"][:2],
                "steps": [{"excluded": 1, "drop_points": 2.2, "int8_nodes_left": 1},
                          {"excluded": 2, "drop_points": 0.0, "int8_nodes_left": 0}]}
    models["depth-06"]["onnx"]["int8"]["build"]["quant_exclusion"] = all_fp32
    models["depth-06"]["onnx"]["int8"]["build"]["selection"]["switched"] = {
        "from": "unfused-s8", "to": None, "tried": [{"name": "fused", "drop_points": 1.8048}]}
    note = [n for n in int8_notes(models, ["depth-06"]) if "no int8 model" in n]
    assert note == ["int8 (depth-06): no int8 model within --max-quant-drop 1 on held-out train (1283 examples): "
                    "only keeping all 2 quantizable node(s) in fp32 kept the score, so this int8 file is the fp32 "
                    "graph (6.8 ms before, 7.3 ms after); the smallest drop with int8 nodes was 1.80 points: "
                    "deploy fp32 at this depth, or allow --max-quant-drop 1.81"]


# --- through export -----------------------------------------------------------------------------------------


def test_export_records_the_candidates_and_the_budget_check(tmp_path):
    from glp_bench.core.jsonio import read_versioned
    from glp_bench.export.stage import export_run

    run_dir = make_run(tmp_path, "bert", {4: [], 2: [1, 2]})
    export_run(run_dir, variants="fp32,int8").raise_for_failures()
    models = json.loads((run_dir / "manifest.json").read_text())["models"]
    first, second = (models[n]["onnx"]["int8"] for n in ("depth-04", "depth-02"))
    sel = first["build"]["selection"]
    assert sel["mode"] == "measured" and len(sel["candidates"]) >= 4
    assert all(c["status"] == "ok" and c["latency_ms"] > 0 for c in sel["candidates"])
    assert second["build"]["selection"]["mode"] == "reused from depth-04"
    assert second["build"]["candidate"] == first["build"]["candidate"] == sel["winner"]
    assert first["int8_candidate"] == "auto" and first["max_quant_drop"] == 1.0
    qe = first["build"]["quant_exclusion"]
    assert qe["status"] == "within budget" and qe["budget_points"] == 1.0
    # decided on the 15% of train the search held out (the run's seed), never on dev
    assert qe["decided_on"]["split"] == "train-heldout" and qe["decided_on"]["seed"] == 42
    assert qe["decided_on"]["examples"] == 2 and first["quant_decision"] == "train-heldout"  # 15% of 8 rows
    assert -1 <= qe["fp32_score"] <= 1 and -1 <= qe["int8_score"] <= 1
    # the report says which candidate was shipped and why
    from glp_bench.report.stage import build_report

    notes = [n for sec in build_report([run_dir]).sections for n in sec.notes]
    assert any(n.startswith(f"int8 (depth-04): {sel['winner']} shipped, ") and "tried fused " in n for n in notes)
    spec = sel["measured_with"]
    assert any(f"(timed at batch {spec['batch']}, seq {spec['seq']}, {spec['threads']} thread" in n
               for n in notes if " shipped, " in n)
    ej = read_versioned(run_dir / "depth-04" / "onnx" / "export.json", "glp-bench-export", 1)
    assert ej["options"]["int8_candidate"] == "auto" and ej["options"]["max_quant_drop"] == 1.0
    # a forced candidate and another budget make int8 stale; fp32 is kept
    report = export_run(run_dir, variants="fp32,int8", int8_candidate="unfused-s8-channel", max_quant_drop=2.0)
    assert report.skipped == {"depth-04": ["fp32"], "depth-02": ["fp32"]}
    rec = report.records["depth-02"]["int8"]
    assert rec["build"]["candidate"] == "unfused-s8-channel" and rec["build"]["selection"]["mode"] == "forced"
    assert rec["build"]["quant_exclusion"]["budget_points"] == 2.0


def test_the_int8_choice_never_reads_dev(tmp_path, monkeypatch):
    """Dev raises on read while int8 is chosen (candidate timing, sensitivity, every exclusion step; the drop is
    forced over budget so that all of them run); it is read only afterwards, for the reported scores."""
    from glp_bench.export import int8, quant_exclude, stage, validate
    from glp_bench.export.stage import export_run

    run_dir = make_run(tmp_path, "bert", {2: [1, 2]})
    dev_ids, choosing, decided = set(), [False], []
    real_dev_loader, real_predict, real_build = stage._dev_loader, validate.predict_onnx, stage.build_int8

    def dev_loader(*a, **k):
        get = real_dev_loader(*a, **k)

        def dev(model_dir):
            encoded, tok, n = get(model_dir)
            dev_ids.update(id(e) for e in encoded.values())
            return encoded, tok, n
        return dev

    def predict(session, encoded, tokenizer, batch_size=64):
        if choosing[0]:
            assert id(encoded) not in dev_ids, "dev was read while int8 was being chosen"
            decided.append(len(encoded))
        return real_predict(session, encoded, tokenizer, batch_size)

    def build(*a, **k):
        choosing[0] = True
        try:
            return real_build(*a, **k)
        finally:
            choosing[0] = False

    for mod in (int8, quant_exclude):
        monkeypatch.setattr(mod, "drop_points", lambda fp32, q: 5.0)
    monkeypatch.setattr(stage, "_dev_loader", dev_loader)
    monkeypatch.setattr(validate, "predict_onnx", predict)
    monkeypatch.setattr(stage, "build_int8", build)
    export_run(run_dir, variants="fp32,int8", int8_candidate="unfused-s8").raise_for_failures()
    rec = json.loads((run_dir / "manifest.json").read_text())["models"]["depth-02"]["onnx"]["int8"]
    qe = rec["build"]["quant_exclusion"]
    assert qe["status"] == "over budget after excluding every node" and qe["decided_on"]["split"] == "train-heldout"
    assert len(qe["steps"]) >= 2 and decided and set(decided) == {2}  # fp32, int8 and every step: held-out only
    assert "matthews_correlation" in rec["dev_scores"]  # dev is scored afterwards, as the result


def test_negative_max_quant_drop_and_unknown_candidate_exit_2(tmp_path):
    from glp_bench.core.errors import ExportError
    from glp_bench.export.stage import export_run

    run_dir = make_run(tmp_path, "bert", {2: [1, 2]})
    for cmd in (["export", "--run", str(run_dir)], ["prune-and-export", "--task", "cola", "--run", str(tmp_path / "r")]):
        proc = run_cli(*cmd, "--max-quant-drop", "-1")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "argument --max-quant-drop: expected a finite number >= 0" in errors[0]
    assert not (tmp_path / "r").exists()
    with pytest.raises(ExportError, match="max-quant-drop"):
        export_run(run_dir, max_quant_drop=-0.5)
    with pytest.raises(ExportError, match="unknown int8 candidate"):
        export_run(run_dir, int8_candidate="fastest-please")
    assert not (Path(run_dir) / "depth-02" / "onnx").exists()  # refused before any work
