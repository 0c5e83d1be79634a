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
