"""glp-bench latency: targets, the measurement core on real ONNX sessions, and the CLI end to end on a
tiny exported model (few runs: these tests check behaviour, never absolute speed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from glp_bench.bench import results, runner, stats
from glp_bench.bench.runner import BenchConfig, measure
from glp_bench.core import targets
from glp_bench.core.errors import DeviceError
from tests.conftest import REPO, assert_clean_error, assert_schema, build_tiny_model, gpu, run_cli

# --- fixtures ------------------------------------------------------------------------------------


def _export(model_dir: Path, out: Path) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), output=str(out), task="text-classification", opset=18)
    return out / "model.onnx"


def make_tiny_run(root: Path, depths=(4, 2)) -> Path:
    """A run directory as the exporter leaves it: depth-NN/model + depth-NN/onnx/{model,model.int8}.onnx
    and manifest records (fp32-opt recorded as failed, to check that it is skipped)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glp_bench.core.jsonio import sha256_file
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.surgery import drop_layers

    full = max(depths)
    src = build_tiny_model("bert", root / "src", layers=full)
    run = RunDir(root / "run").create({"task": "cola", "model": str(src), "original_depth": full})
    tok = AutoTokenizer.from_pretrained(src)
    for depth in depths:
        name = f"depth-{depth:02d}"
        model = AutoModelForSequenceClassification.from_pretrained(src)
        if depth < full:
            model = drop_layers(model, list(range(depth, full)))
        model_dir = run.path / name / "model"
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        fp32 = _export(model_dir, run.path / name / "onnx")
        quantize_dynamic(str(fp32), str(fp32.parent / "model.int8.onnx"), weight_type=QuantType.QInt8)
        onnx = {}
        for variant, filename in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
            p = fp32.parent / filename
            onnx[variant] = {"path": f"{name}/onnx/{filename}", "size": p.stat().st_size, "sha256": sha256_file(p),
                             "provider": "CPUExecutionProvider", "dev_scores": {"mcc": depth / 10}, "status": "ok"}
        onnx["fp32-opt"] = {"path": f"{name}/onnx/model.opt.onnx", "status": "failed", "error": "fusion failed"}
        run.models[name] = {"depth": depth, "kept_layers": list(range(depth)), "strategies": ["glp"],
                            "dev_scores": {"mcc": depth / 10}, "path": f"{name}/model", "onnx": onnx}
    run.save()
    return run.path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("latency-run"))


# --- targets -------------------------------------------------------------------------------------


def test_shipped_targets_load_and_exist_once():
    names = {"cpu", "cuda", "embedded-arm64"}
    assert {p.stem for p in targets.PACKAGED.glob("*.toml")} == names
    tracked = subprocess.run(["git", "ls-files", "*.toml"], cwd=REPO, capture_output=True, text=True).stdout.split()
    copies = sorted(f for f in tracked if Path(f).stem in names)
    assert [REPO / f for f in copies] == sorted(targets.PACKAGED / f"{n}.toml" for n in names), "one copy each"
    for name in names:
        t = targets.load_target(targets.PACKAGED / f"{name}.toml")
        assert t.name == name and targets.available_targets()[name] == targets.PACKAGED / f"{name}.toml"
    cpu = targets.resolve_target("cpu")
    assert cpu.provider == "CPUExecutionProvider" and cpu.thread_counts(physical=4, logical=8) == [1, 4]
    assert cpu.batch_sizes == (1, 8, 32) and cpu.seq_lengths == (128,)
    cuda = targets.resolve_target("cuda")
    assert cuda.provider == "CUDAExecutionProvider" and cuda.io_binding and "fp16" in cuda.variants
    emb = targets.resolve_target("embedded-arm64")
    assert (emb.threads, emb.spinning, emb.memory_arena, emb.variants) == ((1,), False, False, ("int8",))
    assert emb.batch_sizes == (1,) and emb.seq_lengths == (128,) and emb.memory_budget_mb == 512
    assert emb.quantization == "arm64" and emb.arch == "arm64"
    assert emb.affinity(1, available={0, 1, 2, 3}) == (0,)
    on_x86 = emb.emulation("x86_64")
    assert on_x86["emulated"] and "emulation of a arm64 target" in on_x86["notes"][0]
    assert not emb.emulation("aarch64")["emulated"]


def test_targets_resolve_from_a_path_and_from_the_env_folder(tmp_path, monkeypatch):
    f = tmp_path / "myboard.toml"
    f.write_text('device = "cpu"\nthreads = [2]\nbatch_sizes = [4]\nvariants = ["fp32"]\npin_cpus = [0, 99]\n')
    t = targets.resolve_target(str(f))
    assert (t.name, t.threads, t.batch_sizes, t.variants) == ("myboard", (2,), (4,), ("fp32",))
    assert t.affinity(2, available={0, 1}) == (0,)  # CPUs the machine lacks are dropped
    monkeypatch.setenv(targets.ENV_VAR, str(tmp_path))
    assert targets.resolve_target("myboard").source == str(f)
    assert "myboard" in targets.available_targets()


@pytest.mark.parametrize("text,fragment", [
    ('threads = [1\n', "not valid TOML"),
    ('device = "tpu"\n', "'device' must be one of cpu, cuda"),
    ('threads = [0]\n', "'threads' must be"),
    ('batch_sizes = []\n', "'batch_sizes' must be a non-empty list"),
    ('variants = ["fp64"]\n', "'variants' must be"),
    ('variants = ["fp16"]\n', "GPUs only"),
    ('spinning = "yes"\n', "'spinning' must be true or false"),
    ('thread = 1\n', "'thread' is not a target field"),
    ('tensorrt = true\n', "needs device"),
    ('memory_budget_mb = -5\n', "must be positive"),
])
def test_malformed_target_files_are_refused_with_the_key_named(tmp_path, text, fragment):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(targets.TargetError) as e:
        targets.resolve_target(str(f))
    assert fragment in str(e.value) and str(f) in str(e.value)


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(targets.TargetError, match="unknown target 'nope'.*cpu.*embedded-arm64"):
        targets.resolve_target("nope")
    with pytest.raises(targets.TargetError, match="does not exist"):
        targets.resolve_target("missing/board.toml")


# --- the measurement core ------------------------------------------------------------------------


def test_measure_interleaves_isolated_workers_and_keeps_raw_samples(tiny_run):
    d4, d2 = tiny_run / "depth-04" / "onnx" / "model.onnx", tiny_run / "depth-02" / "onnx" / "model.int8.onnx"
    configs = [
        BenchConfig(str(d4), batch=2, seq=8, label="d4"),
        BenchConfig(str(d2), batch=1, seq=8, spinning=False, memory_arena=False, cpu_affinity=(0,), label="d2"),
        BenchConfig(str(tiny_run / "nope.onnx"), label="missing"),
    ]
    rounds_seen = []
    ms = measure(configs, rounds=3, min_runs=4, min_time=0.02, warmup=1,
                 on_round=lambda r, m: rounds_seen.append((r, sum(len(x.rounds) for x in m))))
    assert [r for r, _ in rounds_seen] == [0, 1, 2]
    m4, m2, missing = ms
    assert m4.ok and m2.ok and not missing.ok
    assert "nope.onnx" in missing.error and missing.rounds == []
    # one worker per round, each with >= min_runs samples covering >= min_time of timed runs
    for m in (m4, m2):
        assert len(m.rounds) == 3
        for r in m.rounds:
            assert len(r) >= 4 and sum(r) >= 0.02 * 0.8
        assert m.summary["n"] == len(m.samples) == sum(len(r) for r in m.rounds)
        assert m.summary["p50"] == pytest.approx(float(np.percentile(m.samples, 50)))
        assert m.info["providers"][0] == "CPUExecutionProvider"
        assert 10 < m.peak_rss_mb < 2000 and m.session_rss_mb >= 0 and len(m.session_init_s) == 3
    assert m4.info["inputs"] == {"input_ids": [2, 8], "attention_mask": [2, 8], "token_type_ids": [2, 8]}
    assert m2.info["cpu_affinity"] == "0"
    # positions follow the interleaved order (the failed config still took its slot in round 0)
    order = stats.interleaved_order(3, 3)
    assert m4.positions == [order[r].index(0) for r in range(3)]
    assert m2.positions == [order[r].index(1) for r in range(3)]
    # round trip through the results representation
    again = runner.Measurement.from_dict(json.loads(json.dumps(m4.to_dict())))
    assert again.config == m4.config and again.samples == m4.samples


def test_torch_eager_reference_runs_the_same_protocol(tiny_run):
    cfg = BenchConfig(str(tiny_run / "depth-04" / "model"), backend="torch", batch=2, seq=8, label="torch")
    (m,) = measure([cfg], rounds=1, min_runs=3, min_time=0.0, warmup=1)
    assert m.ok, m.error
    assert m.info["runtime"].startswith("torch") and m.info["torch_threads"] == 1
    assert m.info["inputs"]["input_ids"] == [2, 8] and len(m.samples) >= 3


def test_missing_gpu_provider_is_a_clear_device_error(tiny_run):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    cfg = BenchConfig(str(tiny_run / "depth-04" / "onnx" / "model.onnx"), provider="CUDAExecutionProvider")
    with pytest.raises(DeviceError, match="CUDAExecutionProvider is not available.*onnxruntime-gpu"):
        measure([cfg], rounds=1)


# --- the CLI end to end ----------------------------------------------------------------------------


def test_latency_cli_end_to_end_on_a_tiny_exported_run(tiny_run):
    proc = run_cli("latency", "--run", str(tiny_run), "--device", "cpu", "--threads", "1", "--batch-sizes", "1,2",
                   "--seq-lengths", "8", "--rounds", "2", "--min-runs", "3", "--min-time", "0.01", "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    assert "depth-02" in proc.stdout and "torch-eager" in proc.stdout and "vs fp32 full" in proc.stdout
    assert "depth-04/fp32-opt: skipped" in proc.stderr
    doc = assert_schema(results.load(tiny_run / "latency" / "cpu.json"), "latency")
    assert doc["format"] == "glp-bench-latency" and doc["version"] == 1 and doc["complete"]
    env = doc["environment"]
    assert env["cpu_model"] and env["physical_cores"] >= 1 and env["packages"]["onnxruntime"]
    assert doc["host"]["onnxruntime"] and "CPUExecutionProvider" in doc["host"]["available_providers"]
    assert doc["reference"] == {"onnx": "depth-04/fp32", "torch": "depth-04/torch-eager", "depth": 4}
    ms = {m["key"]: m for m in doc["measurements"]}
    expected = {f"depth-0{d}/{v}/b{b}/s8/t1" for d in (4, 2) for v in ("fp32", "int8") for b in (1, 2)}
    expected |= {f"depth-04/torch-eager/b{b}/s8/t1" for b in (1, 2)}
    assert set(ms) == expected
    for m in ms.values():
        assert m["error"] is None and len(m["samples_s"]) == 2 and all(len(r) >= 3 for r in m["samples_s"])
        flat = stats.flatten(m["samples_s"])
        s = m["summary_s"]  # derived from the raw samples kept beside it
        assert s["p50"] == pytest.approx(np.percentile(flat, 50)) and s["p99"] == pytest.approx(np.percentile(flat, 99))
        assert s["balanced_median"] == pytest.approx(np.mean([np.median(r) for r in m["samples_s"]]))
        assert m["throughput"]["sequences_per_s"] == pytest.approx(m["batch"] / s["mean"])
        assert m["throughput"]["tokens_per_s"] == pytest.approx(m["batch"] * 8 / s["mean"])
        assert m["unstable"] == (s["cv"] > 0.10)
        assert m["peak_rss_mb"] > 0 and m["file_size"] > 0
        ref = ms[f"depth-04/fp32/b{m['batch']}/s8/t1"]["summary_s"]["balanced_median"]
        torch_ref = ms[f"depth-04/torch-eager/b{m['batch']}/s8/t1"]["summary_s"]["balanced_median"]
        assert m["speedup"]["vs_full_fp32"] == pytest.approx(ref / s["balanced_median"])
        assert m["speedup"]["vs_torch_eager"] == pytest.approx(torch_ref / s["balanced_median"])
        if m["variant"] != "torch-eager":
            assert m["info"]["inputs"]["input_ids"] == [m["batch"], 8]
            assert m["dev_scores"] == {"mcc": m["depth"] / 10}
    assert ms["depth-04/fp32/b1/s8/t1"]["speedup"]["vs_full_fp32"] == 1.0
    assert ms["depth-02/int8/b2/s8/t1"]["path"] == "depth-02/onnx/model.int8.onnx"
    assert ms["depth-02/int8/b2/s8/t1"]["file_size"] == (tiny_run / "depth-02/onnx/model.int8.onnx").stat().st_size
    assert any("fp32-opt: skipped" in w for w in doc["warnings"])


def test_embedded_target_is_an_emulation_with_its_settings(tiny_run, tmp_path):
    out = tmp_path / "emb.json"
    proc = run_cli("latency", "--run", str(tiny_run), "--device", "embedded-arm64", "--seq-lengths", "8",
                   "--rounds", "1", "--min-runs", "3", "--min-time", "0", "--warmup", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = results.load(out)
    assert doc["target"]["name"] == "embedded-arm64" and doc["target"]["emulated"] is (os.uname().machine not in ("aarch64", "arm64"))
    if doc["target"]["emulated"]:
        assert "emulation of a arm64 target" in proc.stderr
    variants = {(m["model"], m["variant"]) for m in doc["measurements"]}
    # the target's int8 + always the full-depth fp32 reference; no PyTorch on the board
    assert variants == {("depth-04", "int8"), ("depth-02", "int8"), ("depth-04", "fp32")}
    for m in doc["measurements"]:
        assert (m["threads"], m["batch"], m["spinning"], m["memory_arena"]) == (1, 1, False, False)
        assert m["cpu_affinity"] == [sorted(os.sched_getaffinity(0))[0]]
        assert m["over_budget"] is False and m["speedup"]["vs_torch_eager"] is None


def test_plan_warns_when_the_int8_preset_differs_from_the_target(tiny_run):
    from glp_bench.bench.plan import make_plan
    from glp_bench.core.rundir import RunDir

    run = RunDir(tiny_run).load()
    emb = targets.resolve_target("embedded-arm64")
    for rec in run.models.values():
        rec["onnx"]["int8"]["preset"] = "avx512_vnni"  # in memory only
    plan = make_plan(run, emb)
    assert any("--quant-preset arm64" in w for w in plan.warnings)
    assert [(m["model"], m["variant"]) for m, _ in plan.entries] == [
        ("depth-04", "fp32"), ("depth-04", "int8"), ("depth-02", "int8")]
    for rec in run.models.values():
        rec["onnx"]["int8"]["preset"] = "arm64"
    assert not any("quant-preset" in w for w in make_plan(run, emb).warnings)
    # --models keeps the full-depth reference even when it is not asked for
    plan = make_plan(run, emb, models=["depth-02"], variants=["fp32"])
    assert [(m["model"], m["variant"]) for m, _ in plan.entries] == [("depth-04", "fp32"), ("depth-02", "fp32")]


@gpu
def test_cuda_target_with_io_binding(tiny_run):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu")
    proc = run_cli("latency", "--run", str(tiny_run), "--device", "cuda", "--variants", "fp32", "--batch-sizes", "1",
                   "--seq-lengths", "8", "--rounds", "1", "--min-runs", "3", "--min-time", "0")
    assert proc.returncode == 0, proc.stderr
    doc = results.load(tiny_run / "latency" / "cuda.json")
    for m in doc["measurements"]:
        assert m["error"] is None
        if m["backend"] == "onnxruntime":
            assert m["info"]["providers"][0] == "CUDAExecutionProvider" and m["info"]["io_binding"]


# --- bad input -------------------------------------------------------------------------------------


def test_bad_input_gives_one_clear_error(tiny_run, tmp_path):
    quick = ("--rounds", "1", "--min-runs", "1", "--min-time", "0", "--batch-sizes", "1", "--seq-lengths", "8",
             "--threads", "1", "--no-torch")  # should a check fail to stop the run, it stays short

    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--device", "nope", *quick), "unknown target 'nope'")
    bad = tmp_path / "bad.toml"
    bad.write_text("threads = [1\n")
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--device", str(bad)), "not valid TOML")
    assert_clean_error(run_cli("latency", "--run", str(tmp_path / "none")), "not a glp-bench run directory")
    from glp_bench.core.rundir import RunDir

    empty = RunDir(tmp_path / "empty").create({"task": "cola"})
    empty.models["depth-04"] = {"depth": 4, "kept_layers": [0, 1, 2, 3], "dev_scores": {"mcc": 0.1}}
    empty.save()
    assert_clean_error(run_cli("latency", "--run", str(empty.path)), "has no exported ONNX models")
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--variants", "fp32-opt", *quick), "no usable ONNX file")
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--tensorrt", *quick), "--tensorrt needs a cuda target")
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--models", "depth-09", *quick), "no exported model depth-09")
    assert_clean_error(run_cli("latency", cwd=tmp_path), "no run directory found")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--device", "cuda", *quick),
                           "CUDAExecutionProvider is not available")
    assert not (tiny_run / "latency" / "cuda.json").exists()


# --- options checked against the model and the machine (issue 32.3, 32.6) ---------------------------------


QUICK = ("--rounds", "1", "--min-runs", "2", "--min-time", "0", "--warmup", "1", "--no-torch", "--variants", "int8")


def test_options_beyond_the_model_or_the_machine_are_refused_before_any_work(tiny_run, tmp_path):
    out = tmp_path / "cpu.json"
    proc = run_cli("latency", "--run", str(tiny_run), "--threads", "1", "--batch-sizes", "1", "--seq-lengths", "8",
                   "--out", str(out), *QUICK)
    assert proc.returncode == 0, proc.stderr
    good = out.read_bytes()
    cpus = len(os.sched_getaffinity(0))
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--seq-lengths", "8,200", "--out", str(out), *QUICK),
                       "--seq-lengths asks for sequence length 200 but depth-04 has 160 positions")
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--threads", "100000", "--out", str(out), *QUICK),
                       f"may use {cpus} CPU(s)")
    board = tmp_path / "board.toml"
    board.write_text(f"threads = [{cpus + 1}]\nseq_lengths = [8]\n")
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--device", str(board), "--out", str(out), *QUICK),
                       f"'threads' of target file {board} asks for {cpus + 1} threads")
    from glp_bench.bench import limits

    available = limits.available_mb()
    # a batch far beyond this machine's memory (over 8 TB by the estimate at this seq)
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--batch-sizes", "1,10000000", "--seq-lengths", "160",
                               "--out", str(out), *QUICK), "--batch-sizes: batch 10000000 x seq 160")
    assert out.read_bytes() == good  # nothing measured, nothing rewritten
    assert available is None or available > 0


def test_memory_estimate_bounds_a_real_worker_and_refuses_what_does_not_fit(tiny_run):
    from glp_bench.bench import limits
    from glp_bench.bench.plan import make_plan
    from glp_bench.core.errors import DeviceError
    from glp_bench.core.rundir import RunDir
    from tests.conftest import tiny_config

    shape = limits.read_shape(tiny_run / "depth-04" / "onnx")
    assert (shape.hidden, shape.heads, shape.intermediate, shape.max_positions) == (32, 2, 64, 160)
    roberta = limits.ModelShape.from_config(tiny_config("roberta").to_dict())
    assert roberta.max_positions == 160 - 1  # positions start after the padding index (0)
    distil = limits.ModelShape.from_config(tiny_config("distilbert").to_dict())
    assert (distil.hidden, distil.heads, distil.intermediate) == (32, 2, 64)
    # the estimate is above what a real worker's session grows by, from batch 1 to a large batch
    model = str(tiny_run / "depth-04" / "onnx" / "model.onnx")
    small, big = (runner.run_worker(BenchConfig(model, batch=b, seq=160), warmup=1, min_runs=1, min_time=0, max_time=30)
                  for b in (1, 256))
    grown_mb = big["session_rss_mb"] - small["session_rss_mb"]
    assert 0 < grown_mb <= 255 * shape.sequence_bytes(160) / limits.MB
    # the plan refuses a batch whose estimate exceeds the memory available, and says which batch fits
    run = RunDir(tiny_run).load()
    cpu = targets.resolve_target("cpu")
    plan = make_plan(run, cpu, batch_sizes=[1, 1024], seq_lengths=[160], torch_reference=False, memory_mb=2000.0)
    assert {c.batch for c in plan.configs} == {1, 1024}
    with pytest.raises(DeviceError, match=r"batch 100000 x seq 160 .* but 2.0 GB is available; use batch sizes up to \d+"):
        make_plan(run, cpu, batch_sizes=[1, 100000], seq_lengths=[160], torch_reference=False, memory_mb=2000.0)
    fits = limits.largest_batch(shape, 160, (tiny_run / "depth-04/onnx/model.onnx").stat().st_size, "onnxruntime", 2000.0)
    make_plan(run, cpu, batch_sizes=[fits], seq_lengths=[160], torch_reference=False, memory_mb=2000.0)
    with pytest.raises(DeviceError, match="use batch sizes up to"):
        make_plan(run, cpu, batch_sizes=[fits + 1], seq_lengths=[160], torch_reference=False, memory_mb=2000.0)


# --- the quick default and the full sweep (issue 32.10) -----------------------------------------------------


def test_quick_sweep_is_a_subset_of_the_full_one_and_its_time_is_estimated(tiny_run):
    from glp_bench.bench.plan import WORKER_OVERHEAD_S, estimate_seconds, make_plan, sweep_shapes
    from glp_bench.core.rundir import RunDir

    cpu = targets.resolve_target("cpu")
    counts = cpu.thread_counts()
    assert sweep_shapes(cpu, "full") == {"threads": counts, "batch_sizes": [1, 8, 32], "seq_lengths": [128]}
    assert sweep_shapes(cpu, "quick") == {"threads": counts[-1:], "batch_sizes": [1, 8], "seq_lengths": [128]}
    board = targets.parse_target({"threads": [1, 2], "batch_sizes": [16, 1, 4], "seq_lengths": [64, 256, 128]}, "b")
    assert sweep_shapes(board, "quick", 128) == {"threads": [2], "batch_sizes": [1, 4], "seq_lengths": [128]}
    assert sweep_shapes(board, "quick", 200) == {"threads": [2], "batch_sizes": [1, 4], "seq_lengths": [256]}
    assert sweep_shapes(board, "quick", 128, threads=[1], batch_sizes=[2]) == {
        "threads": [1], "batch_sizes": [2], "seq_lengths": [128]}  # options given win
    run = RunDir(tiny_run).load()
    tiny = targets.parse_target({"threads": [1], "batch_sizes": [1, 2, 3], "seq_lengths": [8, 16]}, "tiny")
    quick, full = (make_plan(run, tiny, sweep=s) for s in ("quick", "full"))
    # 2 depths x (fp32, int8) + PyTorch, per shape: quick 2 batches x 1 seq, full 3 x 2
    assert (len(quick.configs), len(full.configs)) == (2 * 5, 6 * 5)
    assert {c.label for c in quick.configs} <= {c.label for c in full.configs}
    assert {(c.batch, c.seq) for c in quick.configs} == {(1, 16), (2, 16)}  # nearest the max_length (128 by default)
    expected = 3 * sum(1.0 + WORKER_OVERHEAD_S[c.backend] for c in quick.configs)
    assert estimate_seconds(quick.configs, 3, 1.0) == pytest.approx(expected)


# --- a new run meets the results already there (issue 32.3) ----------------------------------------------------


def test_a_short_run_merges_into_the_results_file_and_another_machine_is_refused(tiny_run, tmp_path):
    out = tmp_path / "cpu.json"
    first = run_cli("latency", "--run", str(tiny_run), "--threads", "1", "--batch-sizes", "1,2", "--seq-lengths", "8",
                    "--out", str(out), *QUICK)
    assert first.returncode == 0, first.stderr
    assert "quick sweep (threads 1; batch 1,2; seq 8): 6 configurations x 1 rounds" in first.stderr
    assert "estimated" in first.stderr and "measured in" in first.stderr
    before = {m["key"]: m for m in results.load(out)["measurements"]}
    second = run_cli("latency", "--run", str(tiny_run), "--threads", "1", "--batch-sizes", "1", "--seq-lengths", "8",
                     "--out", str(out), *QUICK)
    assert second.returncode == 0, second.stderr
    assert "kept 3 earlier measurement(s)" in second.stderr and "replaced 3 earlier measurement(s)" in second.stderr
    doc = assert_schema(results.load(out), "latency")
    after = {m["key"]: m for m in doc["measurements"]}
    assert set(after) == set(before)  # the batch-2 rows survive the batch-1 run
    for key, m in after.items():
        if "/b2/" in key:
            assert m["samples_s"] == before[key]["samples_s"] and m["measured_at"] == before[key]["measured_at"]
        else:
            assert m["samples_s"] != before[key]["samples_s"] and m["measured_at"] == doc["created"]
    assert doc["merge"]["kept"] == 3 and [r["created"] for r in doc["earlier_runs"]] == [before_created(before)]
    # results from another machine are not mixed in: refused before any work, file untouched
    doc["environment"]["cpu_model"] = "Some Other CPU"
    results.save(out, doc)
    kept = out.read_bytes()
    assert_clean_error(run_cli("latency", "--run", str(tiny_run), "--threads", "1", "--batch-sizes", "1",
                               "--seq-lengths", "8", "--out", str(out), *QUICK),
                       "another machine or set-up (cpu_model: 'Some Other CPU' in the file")
    assert out.read_bytes() == kept
    third = run_cli("latency", "--run", str(tiny_run), "--threads", "1", "--batch-sizes", "1", "--seq-lengths", "8",
                    "--out", str(out), "--replace", *QUICK)
    assert third.returncode == 0, third.stderr
    assert {m["key"] for m in results.load(out)["measurements"]} == {k for k in before if "/b1/" in k}


def before_created(records: dict) -> str:
    (created,) = {m["measured_at"] for m in records.values()}
    return created


def _doc(created: str, rows: list[tuple[str, list[list[float]] | None, str | None]], complete=True) -> dict:
    ms = []
    for key, samples, error in rows:
        model, variant, b, s, t = key.split("/")
        ms.append({"key": key, "model": model, "variant": variant, "depth": 4, "batch": int(b[1:]), "seq": int(s[1:]),
                   "threads": int(t[1:]), "samples_s": samples or [], "error": error, "sha256": "aaa",
                   "summary_s": {"balanced_median": float(np.mean([np.median(r) for r in samples])),
                                 "cv": 0.01, "p50": 0.001} if samples and not error else None})
    return {"created": created, "complete": complete, "rounds_done": 3, "settings": {"max_cv": 0.1},
            "target": {"name": "cpu"}, "measurements": ms, "warnings": [], "reference": {"onnx": None}}


def test_merge_keeps_good_rows_over_failed_or_unfinished_ones_and_drops_stale_files():
    from glp_bench.bench import merge

    three = [[0.001] * 3] * 3
    old = _doc("t0", [("depth-04/int8/b1/s8/t1", three, None), ("depth-04/fp32/b1/s8/t1", three, None),
                      ("depth-02/int8/b1/s8/t1", three, None), ("depth-02/fp32/b1/s8/t1", three, None)])
    one = [[0.002] * 3]
    new = _doc("t1", [("depth-04/int8/b1/s8/t1", None, "worker exited with status 1"),
                      ("depth-04/fp32/b1/s8/t1", one, None)], complete=False)
    sha = {("depth-02", "fp32"): "bbb"}  # re-exported since the old run
    doc, summary = merge.combine(old, new, sha)
    rows = {m["key"]: m for m in doc["measurements"]}
    assert summary["kept_over_failed"] == ["depth-04/int8/b1/s8/t1"] and rows["depth-04/int8/b1/s8/t1"]["error"] is None
    # an interrupted new run with 1 round does not replace 3 good rounds yet ...
    assert rows["depth-04/fp32/b1/s8/t1"]["samples_s"] == three and rows["depth-04/fp32/b1/s8/t1"]["measured_at"] == "t0"
    assert summary["dropped_stale"] == ["depth-02/fp32/b1/s8/t1"] and "depth-02/fp32/b1/s8/t1" not in rows
    assert "depth-02/int8/b1/s8/t1" in rows and doc["earlier_runs"][0]["created"] == "t0"
    # ... a finished one does
    doc, summary = merge.combine(old, dict(new, complete=True), sha)
    assert {m["key"]: m for m in doc["measurements"]}["depth-04/fp32/b1/s8/t1"]["samples_s"] == one
    assert summary["replaced"] == ["depth-04/fp32/b1/s8/t1"]
    assert any("kept 1 earlier" in line for line in merge.describe(summary, "t0"))
    assert merge.differences(old, old) == []
