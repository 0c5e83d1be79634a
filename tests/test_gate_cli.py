"""`glp-bench gate` end to end on tiny exported models: real worker processes, real ONNX sessions.

Few, short rounds (the decision logic itself is tested on synthetic samples in test_gate.py); exit
statuses: 0 no regression, 1 regression, 2 undecided / bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import (
    assert_clean_error,
    assert_schema,
    build_tiny_model,
    cuda_available,
    gpu,
    make_tokenizer,
    run_cli,
)

FAST = ("--rounds", "7", "--min-runs", "5", "--min-time", "0.02", "--warmup", "1")


def export(model_dir: Path, out: Path) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), output=str(out), task="text-classification", opset=18)
    return out / "model.onnx"


def wide_model(folder: Path, layers: int) -> Path:
    """A small BERT with a realistic width ratio (hidden 128), so its depth dominates the cost."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    tok = make_tokenizer(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=128, intermediate_size=512, num_hidden_layers=layers,
                     num_attention_heads=2, max_position_embeddings=160, pad_token_id=0)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate-models")
    out = {
        "l4": export(build_tiny_model("bert", root / "src4", layers=4), root / "l4"),
        "l5": export(build_tiny_model("bert", root / "src5", layers=5), root / "l5"),
        "wide1": export(wide_model(root / "w1", 1), root / "wide1"),
        "wide4": export(wide_model(root / "w4", 4), root / "wide4"),
    }
    (root / "l4copy").mkdir()
    shutil.copy2(out["l4"], root / "l4copy" / "model.onnx")
    out["l4copy"] = root / "l4copy" / "model.onnx"
    return out


def gate(*args, json_path: Path | None = None):
    extra = ("--json", str(json_path)) if json_path else ()
    return run_cli("gate", *args, *extra, timeout=600)


def test_extra_layer_is_flagged_and_identical_models_are_not(models, tmp_path):
    proc = gate(str(models["l4"]), str(models["l5"]), *FAST, json_path=tmp_path / "slow.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = assert_schema(tmp_path / "slow.json", "gate")
    assert doc["format"] == "glp-bench-gate" and doc["verdict"] == "regression" and doc["exit_code"] == 1
    assert any(r.startswith("encoder layers 4 -> 5") for r in doc["structure"]["regressions"])
    assert doc["baseline"]["structure"]["layers"] == 4 and doc["candidate"]["structure"]["layers"] == 5
    assert doc["settings"]["clock"] == "cpu" and doc["mode"] == "same-job"
    assert doc["timing"]["ratio"] > 1.0  # five layers cost more CPU time than four, whatever the noise
    assert "REGRESSION (exit 1)" in proc.stdout and "encoder layers" in proc.stdout

    proc = gate(str(models["l4"]), str(models["l4copy"]), *FAST, json_path=tmp_path / "same.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "same.json").read_text())
    assert doc["verdict"] == "no regression" and doc["structure"]["regressions"] == []
    assert doc["timing"]["status"] in ("no change", "not significant")
    assert len(doc["rounds"]) == len(doc["passes"]) * 7
    first = [r["first"] for r in doc["rounds"]]
    assert first[:2] == ["baseline", "candidate"]  # which session is created and run first alternates
    assert all(len(r["cpu_s"][0]) >= 5 and len(r["wall_s"][1]) >= 5 for r in doc["rounds"])
    assert "NO REGRESSION (exit 0)" in proc.stdout


def test_timing_alone_flags_a_slower_model_after_a_re_measure(models, tmp_path):
    proc = gate(str(models["wide1"]), str(models["wide4"]), *FAST, "--structure", "report",
                json_path=tmp_path / "g.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["timing"]["status"] == "regression" and doc["timing"]["ratio"] > 1.5
    assert len(doc["passes"]) == 2 and doc["timing"]["n_baseline"] == 14  # re-measured, decided on both passes
    assert doc["passes"][0]["verdict"]["status"] == "regression"
    assert "(reported only)" in proc.stdout
    # the other way round it is an improvement: exit 0
    proc = gate(str(models["wide4"]), str(models["wide1"]), *FAST, "--structure", "report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "improvement" in proc.stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from tests.test_latency import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("gate-run"))


def test_run_directories_and_export_folders_resolve(tiny_run, tmp_path):
    proc = gate(str(tiny_run), str(tiny_run / "depth-04" / "onnx"), "--variant", "int8", *FAST,
                json_path=tmp_path / "g.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["baseline"]["kind"] == "run" and doc["baseline"]["model"] == "depth-04"  # the full-depth model
    assert doc["baseline"]["onnx"].endswith("depth-04/onnx/model.int8.onnx")
    assert doc["candidate"]["kind"] == "folder" and doc["candidate"]["onnx"] == doc["baseline"]["onnx"]
    assert doc["baseline"]["structure"]["families"].get("quantized matmul", 0) > 0

    proc = gate(str(tiny_run), str(tiny_run), "--model", "nope", *FAST)
    assert_clean_error(proc, "no exported model 'nope'")
    proc = gate(str(tiny_run), str(tiny_run), "--variant", "fp32-opt", *FAST)
    assert_clean_error(proc, "export status is 'failed'")


def test_stored_baseline_same_environment_and_mismatches(tiny_run, tmp_path):
    latency = tiny_run / "latency" / "cpu.json"
    proc = run_cli("latency", "--run", str(tiny_run), "--variants", "fp32", "--threads", "1", "--batch-sizes", "1",
                   "--seq-lengths", "32", "--rounds", "2", "--min-runs", "10", "--min-time", "0.05", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    cand = tiny_run / "depth-04" / "onnx" / "model.onnx"
    proc = gate("--baseline", str(latency), str(cand), json_path=tmp_path / "s.json")
    # wall-clock against another moment of a shared machine: the verdict may go either way, never "undecided"
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["mode"] == "stored" and doc["baseline"]["record_key"] == "depth-04/fp32/b1/s32/t1"
    assert doc["settings"]["factor"] == 1.25 and doc["settings"]["clock"] == "wall"
    assert doc["timing"]["test"].startswith("Mann-Whitney") and doc["settings"]["rounds"] == 2
    assert doc["baseline"]["onnx"] and all(r["verdict"] == "same" for r in doc["structure"]["rows"])

    for edit, fragment in ((("environment", "cpu_model", "Some Other CPU"), "CPU 'Some Other CPU'"),
                           (("host", "onnxruntime", "1.0.0"), "onnxruntime 1.0.0")):
        d = json.loads(latency.read_text())
        d[edit[0]][edit[1]] = edit[2]
        other = tmp_path / f"{edit[0]}.json"
        other.write_text(json.dumps(d))
        proc = gate("--baseline", str(other), str(cand))
        assert_clean_error(proc, fragment)
        assert "another environment" in proc.stderr
    proc = gate("--baseline", str(latency), str(cand), "--key", "depth-04/fp32/b1/s32/t1", "--threads", "2")
    assert_clean_error(proc, "threads 1 vs 2")
    proc = gate("--baseline", str(latency), str(cand), "--clock", "cpu")
    assert_clean_error(proc, "wall-clock samples")
    proc = gate("--baseline", str(latency), str(cand), "--key", "depth-02/fp32/b9/s9/t9")
    assert_clean_error(proc, "no measurement 'depth-02/fp32/b9/s9/t9'")


def test_bad_input_and_too_few_rounds(models, tmp_path):
    assert_clean_error(gate(str(tmp_path / "missing.onnx"), str(models["l4"])), "does not exist")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    assert_clean_error(gate(str(txt), str(models["l4"])), "not an .onnx file")
    assert_clean_error(gate(str(models["l4"])), "needs a BASELINE and a CANDIDATE")
    assert_clean_error(gate(str(models["l4"]), str(models["l4"]), "--factor", "0.9"), "--factor must be > 1")
    not_latency = tmp_path / "x.json"
    not_latency.write_text("{}")
    assert_clean_error(gate("--baseline", str(not_latency), str(models["l4"])), "not a glp-bench glp-bench-latency")
    proc = gate(str(models["l4"]), str(models["l4copy"]), "--rounds", "3", "--min-runs", "3", "--min-time", "0",
                json_path=tmp_path / "few.json")
    assert_clean_error(proc, "could not decide: too few samples")
    doc = json.loads((tmp_path / "few.json").read_text())  # the evidence is kept even when undecided
    assert doc["exit_code"] == 2 and doc["verdict"] == "undecided" and len(doc["rounds"]) == 3


def _ort_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and cuda_available()


@pytest.mark.skipif(_ort_cuda(), reason="checks the error on machines without a usable CUDA provider")
def test_cuda_without_a_gpu_is_a_clean_error(models):
    proc = gate(str(models["l4"]), str(models["l4copy"]), "--device", "cuda", *FAST)
    assert_clean_error(proc, "CUDAExecutionProvider")


@gpu
def test_cuda_gate_compares_wall_time_with_io_binding(models, tmp_path):
    if not _ort_cuda():
        pytest.skip("needs onnxruntime-gpu with a working CUDAExecutionProvider")
    proc = gate(str(models["wide1"]), str(models["wide1"]), "--device", "cuda", *FAST, json_path=tmp_path / "g.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["settings"]["clock"] == "wall" and doc["settings"]["provider"] == "CUDAExecutionProvider"
