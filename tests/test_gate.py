"""The gate's decision logic on synthetic samples (pure), and structural facts of small ONNX graphs."""

from __future__ import annotations

import numpy as np
import pytest

from glp_bench.gate import decide as gate
from glp_bench.gate import structure
from glp_bench.gate.decide import (
    IMPROVEMENT,
    NO_CHANGE,
    NOT_SIGNIFICANT,
    REGRESSION,
    UNDECIDED,
    MeasurementFailed,
    compare_paired,
    compare_unpaired,
    run_timing,
)


def rounds_of(rng, medians, n=20, cv=0.03):
    """One list of n samples per round around each median, with a right-skewed spread like real latencies."""
    return [list(m * (1 + np.abs(rng.normal(0, cv, n)))) for m in medians]


def pair(rng, ratio, k=10, base=0.020, round_cv=0.02, cv=0.03, load=None):
    """k paired rounds: candidate = baseline * ratio; ``load``: a per-round factor hitting both members."""
    load = np.ones(k) if load is None else np.asarray(load)
    b_med = base * load * (1 + rng.normal(0, round_cv, k))
    c_med = base * ratio * load * (1 + rng.normal(0, round_cv, k))
    return rounds_of(rng, b_med, cv=cv), rounds_of(rng, c_med, cv=cv)


# --- paired (same-job) ---------------------------------------------------------------------------------


def test_clear_regression_is_flagged_with_ratio_and_p():
    rng = np.random.default_rng(1)
    b, c = pair(rng, 1.30)
    v = compare_paired(b, c)
    assert v.status == REGRESSION and v.exit_code == 1
    assert v.ratio == pytest.approx(1.30, rel=0.03)
    assert v.p_slower < 0.01 < v.p_faster
    assert v.n_baseline == v.n_candidate == 10
    assert v.candidate_s / v.baseline_s == pytest.approx(1.30, rel=0.05)
    assert "slower" in v.reason and "significant" in v.reason


def test_clear_improvement_passes():
    rng = np.random.default_rng(2)
    b, c = pair(rng, 0.70)
    v = compare_paired(b, c)
    assert v.status == IMPROVEMENT and v.exit_code == 0
    assert v.ratio == pytest.approx(0.70, rel=0.03)
    assert v.p_faster < 0.01


def test_noise_on_identical_models_is_not_a_regression_and_false_alarms_are_rare():
    """200 A/A datasets from a noisy machine (10% round-to-round, 20% within rounds, so ~14% per pair): one
    pass alone flags about 1.5% of them (ratio beyond 1.10 by chance AND significant); the automatic
    re-measure, deciding on both passes pooled, flags none."""
    rng = np.random.default_rng(3)
    single = [compare_paired(*pair(rng, 1.0, round_cv=0.10, cv=0.20)).status for _ in range(200)]
    assert single.count(REGRESSION) <= 4  # about alpha: the factor and the test together
    assert set(single) <= {NO_CHANGE, NOT_SIGNIFICANT, REGRESSION, IMPROVEMENT}
    assert single.count(NO_CHANGE) > 180
    final = []
    for seed in range(200):
        noisy = np.random.default_rng(1000 + seed)
        passes = run_timing(lambda n, r=noisy: pair(r, 1.0, k=n, round_cv=0.10, cv=0.20), compare_paired, 10)
        final.append(passes[-1].verdict.status)
    assert final.count(REGRESSION) == 0


def test_significant_but_small_difference_is_no_change():
    """asv's rule: significance alone is not enough (a tight 5% slowdown)."""
    rng = np.random.default_rng(4)
    v = compare_paired(*pair(rng, 1.05, round_cv=0.005, cv=0.01))
    assert v.p_slower < 0.01
    assert v.status == NO_CHANGE and v.exit_code == 0


def test_large_but_noisy_ratio_is_not_significant():
    """A 30% ratio that the rounds do not agree on: not significant -> exit 0 (no false alarm)."""
    b = [[0.020] * 5] * 8
    c = [[0.020 * f] * 5 for f in (3.0, 2.5, 0.8, 0.9, 2.0, 0.95, 0.85, 1.8)]
    v = compare_paired(b, c)
    assert v.ratio > 1.10
    assert v.p_slower >= 0.01
    assert v.status == NOT_SIGNIFICANT and v.exit_code == 0


def test_too_few_rounds_is_undecided_never_a_pass():
    rng = np.random.default_rng(5)
    assert gate.min_pairs(0.01) == 7 and gate.min_pairs(0.05) == 5
    b, c = pair(rng, 2.0, k=6)  # even a 2x slowdown: 6 pairs cannot reach p < 0.01 (2^-6 = 0.016)
    v = compare_paired(b, c)
    assert v.status == UNDECIDED and v.exit_code == 2
    assert "too few samples" in v.reason and "7" in v.reason
    b, c = pair(rng, 2.0, k=7)
    assert compare_paired(b, c).status == REGRESSION


def test_empty_round_is_undecided_and_unequal_pairing_is_an_error():
    rng = np.random.default_rng(6)
    b, c = pair(rng, 1.0)
    c[3] = []
    v = compare_paired(b, c)
    assert v.status == UNDECIDED and "candidate round 4 has no samples" in v.reason
    with pytest.raises(ValueError, match="paired"):
        compare_paired(b[:5], c)
    with pytest.raises(ValueError, match="factor"):
        compare_paired(b, b, factor=0.9)


def test_pairing_cancels_machine_load_that_defeats_an_unpaired_test():
    """Each round's machine state (0.5x..2x, the same for both members of a pair) swamps a 15% slowdown
    for a comparison that ignores the pairing, but not for the paired one."""
    rng = np.random.default_rng(7)
    load = rng.choice([1.0, 1.5, 2.0], size=10)
    b, c = pair(rng, 1.15, load=load, round_cv=0.01)
    paired = compare_paired(b, c)
    assert paired.status == REGRESSION and paired.ratio == pytest.approx(1.15, rel=0.03)
    b_meds = [[float(np.median(r))] for r in b]
    c_meds = [[float(np.median(r))] for r in c]
    unpaired = compare_unpaired(b_meds, c_meds, factor=1.10)  # the rounds as independent units
    assert unpaired.status != REGRESSION


def test_one_outlier_round_does_not_move_the_hodges_lehmann_ratio():
    rng = np.random.default_rng(8)
    b, c = pair(rng, 1.0, round_cv=0.01)
    c[0] = [x * 3 for x in c[0]]  # one round that ran during a storm
    v = compare_paired(b, c)
    assert v.ratio == pytest.approx(1.0, abs=0.03)
    assert v.status == NO_CHANGE
    assert gate.hodges_lehmann([0.0, 0.0, 0.0, 0.0, 5.0]) == 0.0


def test_identical_samples_give_ratio_one():
    b = [[0.01, 0.011, 0.012]] * 8
    v = compare_paired(b, b)
    assert v.ratio == 1.0 and v.p_slower == 1.0 and v.status == NO_CHANGE


# --- unpaired (stored baseline) ------------------------------------------------------------------------


def test_unpaired_regression_improvement_and_too_few():
    rng = np.random.default_rng(9)
    base = rounds_of(rng, [0.020] * 3, n=15)
    slow = rounds_of(rng, [0.030] * 3, n=15)
    fast = rounds_of(rng, [0.012] * 3, n=15)
    v = compare_unpaired(base, slow)
    assert v.status == REGRESSION and v.ratio == pytest.approx(1.5, rel=0.05) and v.factor == gate.STORED_FACTOR
    assert v.test == gate.UNPAIRED_TEST and v.n_baseline == 45
    assert compare_unpaired(base, fast).status == IMPROVEMENT
    within = rounds_of(rng, [0.022] * 3, n=15)  # 10% slower: beyond 1.10 but within the stored factor 1.25
    assert compare_unpaired(base, within).status == NO_CHANGE
    v = compare_unpaired([[0.02, 0.021]], [[0.05, 0.06]])
    assert v.status == UNDECIDED and "too few samples" in v.reason
    assert gate.min_p_mannwhitney(2, 2) == pytest.approx(1 / 6)


def test_classify_boundaries():
    assert gate.classify(1.10, 0.0, 1.0, 1.10, 0.01) == NO_CHANGE  # "above the factor" is strict
    assert gate.classify(1.1001, 0.009, 1.0, 1.10, 0.01) == REGRESSION
    assert gate.classify(1.1001, 0.01, 1.0, 1.10, 0.01) == NOT_SIGNIFICANT
    assert gate.classify(0.90, 1.0, 0.001, 1.10, 0.01) == IMPROVEMENT  # 0.90 < 1/1.10
    assert gate.classify(0.92, 1.0, 0.001, 1.10, 0.01) == NO_CHANGE


# --- the measure / re-measure loop ---------------------------------------------------------------------


class FakeMachine:
    """Returns paired rounds with the given ratio per pass; counts how often it was asked."""

    def __init__(self, ratios, seed=10):
        self.ratios = list(ratios)
        self.calls = []
        self.rng = np.random.default_rng(seed)

    def __call__(self, n):
        self.calls.append(n)
        return pair(self.rng, self.ratios[len(self.calls) - 1], k=n)


def test_regression_is_remeasured_once_and_decided_on_both_passes():
    m = FakeMachine([1.3, 1.3])
    passes = run_timing(m, compare_paired, 8)
    assert m.calls == [8, 8]
    assert [p.verdict.status for p in passes] == [REGRESSION, REGRESSION]
    assert passes[-1].verdict.n_baseline == 16  # pooled
    assert len(passes[1].baseline_rounds) == 8  # each pass keeps only what it added


def test_a_spike_in_the_first_pass_is_diluted_by_the_re_measure():
    m = FakeMachine([1.13, 1.0])
    passes = run_timing(m, compare_paired, 8)
    assert passes[0].verdict.suspect
    assert len(passes) == 2 and passes[-1].verdict.status != REGRESSION


def test_no_remeasure_when_not_suspect_or_when_disabled():
    m = FakeMachine([1.0])
    assert len(run_timing(m, compare_paired, 8)) == 1 and m.calls == [8]
    m = FakeMachine([1.3])
    passes = run_timing(m, compare_paired, 8, remeasure=False)
    assert len(passes) == 1 and passes[0].verdict.status == REGRESSION


def test_failed_measurement_is_undecided():
    def broken(n):
        raise MeasurementFailed("worker exited with status 1: boom")

    passes = run_timing(broken, compare_paired, 8)
    assert passes[-1].verdict.status == UNDECIDED and "boom" in passes[-1].verdict.reason


# --- overall verdict and stored environment ------------------------------------------------------------


def test_overall_combines_timing_and_structure():
    rng = np.random.default_rng(11)
    same = compare_paired(*pair(rng, 1.0))
    slow = compare_paired(*pair(rng, 1.3))
    few = compare_paired(*pair(rng, 1.0, k=3))
    assert gate.overall(same, []).exit_code == 0
    assert gate.overall(slow, []).exit_code == 1
    assert gate.overall(few, []).exit_code == 2
    lost = ["fused attention ops 6 -> 0"]
    o = gate.overall(same, lost)
    assert o.exit_code == 1 and o.status == REGRESSION and any("structure: fused attention" in r for r in o.reasons)
    assert gate.overall(few, lost).exit_code == 1  # noise-free evidence decides even when timing cannot
    o = gate.overall(same, lost, structure_fails=False)
    assert o.exit_code == 0 and any("reported only" in r for r in o.reasons)


def test_environment_mismatches():
    env = {"cpu_model": "Xeon A", "physical_cores": 2, "logical_cores": 2}
    assert gate.environment_mismatches(env, "1.32.0", 1, dict(env), "1.32.0", 1) == []
    diffs = gate.environment_mismatches(env, "1.31.0", 1, {**env, "cpu_model": "Xeon B"}, "1.32.0", 2)
    assert any("CPU 'Xeon A' vs 'Xeon B'" in d for d in diffs)
    assert any("onnxruntime 1.31.0 vs 1.32.0" in d for d in diffs)
    assert any("threads 1 vs 2" in d for d in diffs)
    assert len(diffs) == 3


# --- structure ------------------------------------------------------------------------------------------


def tiny_graph(path, layers=2, fused=False, quantized=False, external=False):
    """A BERT-shaped toy graph (never run): per layer either Softmax + MatMuls + LayerNormalization, or the
    fused com.microsoft Attention/QAttention + SkipLayerNormalization."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    x = "x"
    for i in range(layers):
        w = numpy_helper.from_array(np.full((8, 8), i + 1, dtype=np.float32), f"w{i}")
        inits.append(w)
        if fused:
            op = "QAttention" if quantized else "Attention"
            nodes.append(helper.make_node(op, [x, f"w{i}"], [f"a{i}"], domain="com.microsoft", name=f"{op}_{i}"))
            nodes.append(helper.make_node("SkipLayerNormalization", [f"a{i}", x], [f"h{i}"], domain="com.microsoft"))
        else:
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"q{i}"]))
            nodes.append(helper.make_node("Softmax", [f"q{i}"], [f"s{i}"]))
            nodes.append(helper.make_node("Add", [f"s{i}", x], [f"r{i}"]))
            nodes.append(helper.make_node("LayerNormalization", [f"r{i}"], [f"h{i}"]))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def test_facts_count_layers_fused_ops_nodes_and_external_data(tmp_path):
    plain = structure.facts(tiny_graph(tmp_path / "plain.onnx", layers=3))
    assert plain["layers"] == 3 and plain["nodes"] == 12 and plain["fused"] == {}
    assert plain["ops"]["Softmax"] == 3 and plain["parameters"] == 3 * 64 and plain["opset"] == 18
    fused = structure.facts(tiny_graph(tmp_path / "fused.onnx", layers=3, fused=True))
    assert fused["layers"] == 3 and fused["fused"] == {"Attention": 3, "SkipLayerNormalization": 3}
    assert fused["families"] == {"attention": 3, "layer norm": 3}
    ext_path = tiny_graph(tmp_path / "ext.onnx", layers=3, external=True)
    ext = structure.facts(ext_path)
    data = tmp_path / "ext.onnx.data"
    assert data.is_file() and ext["file_size"] == ext_path.stat().st_size + data.stat().st_size
    assert ext["file_size"] > ext_path.stat().st_size


def test_compare_flags_lost_fusion_extra_layer_and_growth(tmp_path):
    fused = structure.facts(tiny_graph(tmp_path / "f.onnx", layers=3, fused=True))
    plain = structure.facts(tiny_graph(tmp_path / "p.onnx", layers=3))
    deeper = structure.facts(tiny_graph(tmp_path / "d.onnx", layers=4, fused=True))
    quant = structure.facts(tiny_graph(tmp_path / "q.onnx", layers=3, fused=True, quantized=True))

    assert structure.regressions(structure.compare(fused, fused)) == []
    assert all(r["verdict"] == "same" for r in structure.compare(fused, fused))

    lost = structure.regressions(structure.compare(fused, plain))
    assert any(r.startswith("fused attention ops 3 -> 0") and "lost fusion" in r for r in lost)
    assert any(r.startswith("fused layer norm ops 3 -> 0") for r in lost)
    assert any(r.startswith("graph nodes 6 -> 12") for r in lost)

    rows = structure.compare(fused, deeper)
    assert any(r.startswith("encoder layers 3 -> 4") for r in structure.regressions(rows))
    back = {r["metric"]: r["verdict"] for r in structure.compare(deeper, fused)}
    assert back["encoder layers"] == "improvement" and back["graph nodes"] == "improvement"

    # quantizing turns Attention into QAttention: the attention family keeps its 3 members, no loss
    rows = {r["metric"]: r for r in structure.compare(fused, quant)}
    assert rows["fused attention ops"]["verdict"] == "changed"
    assert "Attention 3->0" in rows["fused attention ops"]["note"] and "QAttention 0->3" in rows["fused attention ops"]["note"]


def test_compare_tolerances_and_partial_facts():
    base = {"nodes": 100, "file_size": 1000}
    rows = {r["metric"]: r["verdict"] for r in structure.compare(base, {"nodes": 104, "file_size": 1100})}
    assert rows == {"graph nodes": "changed", "file size (bytes)": "regression"}
    rows = {r["metric"]: r["verdict"] for r in structure.compare(base, {"nodes": 106, "file_size": 900})}
    assert rows == {"graph nodes": "regression", "file size (bytes)": "improvement"}
    # a stored baseline may only know its file size: the other metrics are skipped, not failed
    assert [r["metric"] for r in structure.compare({"file_size": 1000}, {"nodes": 5, "file_size": 1000})] == [
        "file size (bytes)"]
