"""Issue 17: every bad input is one line, exit 2, no traceback, refused before any work -- numbers
(non-finite, out of range), output locations (a folder where a file goes, a file where a folder goes),
damaged files read back (safetensors, manifest and latency fields of the wrong type, ONNX), and
``finetune --out`` never overwriting a finished result."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from .conftest import build_tiny_model, write_cola


def cli(capsys, *args: str) -> tuple[int, str]:
    """The CLI in-process: (exit status, stderr); argparse's own refusals included."""
    from glp_bench.cli import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argparse: usage + one error line, exit 2
        code = e.code
    return code, capsys.readouterr().err


def assert_refused(result: tuple[int, str], fragment: str) -> None:
    code, err = result
    assert code == 2, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("glp-bench") and ": error:" in x]
    assert len(lines) == 1, err
    assert fragment.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return build_tiny_model("bert", root / "m", layers=2), write_cola(root / "glue" / "CoLA", n_train=16, n_dev=8)


def prune_args(model, data, run_dir, *extra) -> list[str]:
    return ["prune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
            "--run", str(run_dir), "--device", "cpu", *extra]


# --- numbers: argparse refuses them while parsing, before anything is loaded ----------------------------
NUMBERS = [
    *[(["prune", "--task", "cola", opt, v], "argument " + opt) for opt, v in [
        ("--seed", "-1"), ("--seed", "4294967296"), ("--seed", "99999999999999999999"), ("--seed", "1.5"),
        ("--epochs", "1e30"), ("--epochs", "nan"), ("--epochs", "inf"), ("--epochs", "0"),
        ("--lr", "1e30"), ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1e-5"),
        ("--search-lr", "nan"), ("--search-epochs", "-inf"), ("--search-samples", "-1"),
        ("--ray-cpus-per-task", "0")]],
    *[(["finetune", "--task", "cola", opt, v], "argument " + opt) for opt, v in [
        ("--seed", "-3"), ("--epochs", "1e30"), ("--lr", "1e30"), ("--lr", "nan"), ("--batch-size", "0"),
        ("--max-length", "-1")]],
    (["prune-and-export", "--task", "cola", "--opset", "99"], "argument --opset"),
    (["prune-and-export", "--task", "cola", "--opset", "seven"], "argument --opset"),
    (["prune-and-export", "--task", "cola", "--seed", "-1"], "argument --seed"),
    (["export", "--run", "x", "--opset", "99"], "argument --opset"),
    (["export", "--run", "x", "--opset", "3"], "argument --opset"),
    *[(["latency", opt, v], "argument " + opt) for opt, v in [
        ("--min-time", "nan"), ("--min-time", "-1"), ("--max-time", "nan"), ("--max-time", "0"),
        ("--max-cv", "nan"), ("--max-cv", "-0.1"), ("--rounds", "0"), ("--min-runs", "0"), ("--warmup", "-1")]],
    *[(["gate", "a.onnx", "b.onnx", opt, v], "argument " + opt) for opt, v in [
        ("--factor", "nan"), ("--factor", "inf"), ("--min-time", "nan"), ("--max-time", "nan"),
        ("--alpha", "2"), ("--alpha", "nan"), ("--threads", "-1"), ("--warmup", "-1"), ("--rounds", "0")]],
    *[(["report", opt, v], "argument " + opt) for opt, v in [("--max-drop", "nan"), ("--max-drop", "-1"),
                                                             ("--max-drop", "inf")]],
    *[(["deploy", "--run", "r", "--target", "cpu", "--out", "o", *ov], "argument " + ov[-2]) for ov in [
        ["--max-drop", "nan"], ["--depth", "0"], ["--depth", "1", "--threads", "-1"]]],
]


@pytest.mark.parametrize("args, fragment", NUMBERS, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in NUMBERS])
def test_bad_numbers_are_refused_while_parsing(args, fragment, capsys):
    assert_refused(cli(capsys, *args), fragment)


# --- lists: an empty entry is a typo, refused (never read as a shorter list) ------------------------------
LISTS = [(["latency", opt, v], "argument " + opt) for opt, v in [
    ("--batch-sizes", "1,,8"), ("--threads", "1,"), ("--seq-lengths", ","), ("--models", ""),
    ("--variants", "fp32,")]]


@pytest.mark.parametrize("args, fragment", LISTS, ids=[" ".join(a[1:]) for a, _ in LISTS])
def test_lists_with_an_empty_entry_are_refused_while_parsing(args, fragment, capsys):
    assert_refused(cli(capsys, *args), fragment)


@pytest.mark.parametrize("text", ["fp32,,int8", "int8,", ",", ""])
def test_stage_lists_with_an_empty_entry_are_refused(text):
    from glp_bench.core.errors import ExportError, GlpError, TaskError
    from glp_bench.data.task_def import normalize
    from glp_bench.export.variants import parse_variants
    from glp_bench.prune.search import parse_strategies

    with pytest.raises(ExportError, match="--variants"):
        parse_variants(text)
    with pytest.raises(GlpError, match="--strategy"):
        parse_strategies(text.replace("fp32", "glp").replace("int8", "top"))
    with pytest.raises(TaskError, match="labels"):
        normalize({"name": "mine", "train": "t.csv", "dev": "d.csv",
                   "labels": text.replace("fp32", "a").replace("int8", "b")}, "flags", check_files=False)
    assert parse_variants(" int8 , fp32") == ["fp32", "int8"] and parse_strategies("top, glp") == ["top", "glp"]


def test_gate_factor_at_most_one_is_refused(capsys, tmp_path):
    assert_refused(cli(capsys, "gate", "a.onnx", "b.onnx", "--factor", "0.5"), "--factor must be > 1")


# --- output locations ---------------------------------------------------------------------------------
def test_run_dir_that_is_a_file_or_under_a_file(tiny, tmp_path, capsys):
    model, data = tiny
    f = tmp_path / "afile"
    f.write_text("x")
    assert_refused(cli(capsys, *prune_args(model, data, f)), "is a file, not a folder")
    assert_refused(cli(capsys, *prune_args(model, data, f / "run")), "is a file, not a folder")
    assert f.read_text() == "x"


def test_report_output_and_plot_must_be_files(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    assert_refused(cli(capsys, "report", "--run", "nowhere", "--output", str(tmp_path / "dir")), "is a folder")
    assert_refused(cli(capsys, "report", "--run", "nowhere", "--plot", str(tmp_path / "dir")), "is a folder")


def test_gate_json_must_be_a_file(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    assert_refused(cli(capsys, "gate", "a.onnx", "b.onnx", "--json", str(tmp_path / "dir")), "is a folder")


def test_deploy_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "bundle"
    f.write_text("x")
    assert_refused(cli(capsys, "deploy", "--run", str(tmp_path), "--target", "cpu", "--depth", "1", "--out", str(f)),
                   "is a file, not a folder")


def test_finetune_refuses_an_existing_result_and_a_file_out_before_training(tiny, tmp_path, capsys):
    model, data = tiny
    out = tmp_path / "ft"
    (out / "model").mkdir(parents=True)
    (out / "scores.json").write_text("{}")
    base = ["finetune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--device", "cpu",
            "--epochs", "1", "--max-samples", "8"]
    assert_refused(cli(capsys, *base, "--out", str(out)), "already holds a result; add --force")
    f = tmp_path / "file"
    f.write_text("x")
    assert_refused(cli(capsys, *base, "--out", str(f)), "is a file, not a folder")
    # --force keeps the old result beside, the new one is complete
    code, err = cli(capsys, *base, "--out", str(out), "--force")
    assert code == 0, err
    assert json.loads((out / "scores.json").read_text())["format"] == "glp-bench-finetune"
    (backup,) = tmp_path.glob("ft.bak-*")
    assert (backup / "scores.json").read_text() == "{}"
    assert not list(tmp_path.glob(".ft.tmp-*"))


# --- damaged files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_safetensors_is_refused_by_prune_and_finetune(damage, tiny, tmp_path, capsys):
    model, data = tiny
    broken = Path(shutil.copytree(model, tmp_path / "m"))
    w = broken / "model.safetensors"
    w.write_bytes({"truncated": w.read_bytes()[: w.stat().st_size // 2], "garbage": b"\x00garbage" * 100,
                   "empty": b""}[damage])
    assert_refused(cli(capsys, *prune_args(broken, data, tmp_path / "run")), "not a valid safetensors file")
    assert not (tmp_path / "run" / "manifest.json").exists()
    assert_refused(cli(capsys, "finetune", "--task", "cola", "--model", str(broken), "--data-dir", str(data),
                       "--device", "cpu", "--out", str(tmp_path / "ft")), "not a valid safetensors file")


def _run_with_manifest(tmp_path: Path, models: dict, config=None) -> Path:
    from glp_bench.core.rundir import RunDir

    run = RunDir(tmp_path / "run").create(config or {"task": "cola", "model": "m"})
    run.data["models"] = models
    run.save()
    return run.path


WRONG_MANIFESTS = [
    ({"depth-02": {"depth": "two", "kept_layers": [0, 1], "dev_scores": {"mcc": 0.1}}}, None, "models.depth-02.depth"),
    ({"depth-02": {"depth": 2, "kept_layers": "0,1", "dev_scores": {"mcc": 0.1}}}, None, "kept_layers"),
    ({"depth-02": {"depth": 2, "kept_layers": [0, 1], "dev_scores": [0.1]}}, None, "dev_scores"),
    ({"depth-02": {"depth": 2, "kept_layers": [0, 1], "dev_scores": {"mcc": "high"}}}, None, "dev_scores.mcc"),
    ({"depth-02": [2]}, None, "models.depth-02"),
    ([], None, "field models"),
    ({}, {"task": 7, "model": "m"}, "config.task"),
    ({}, {"task": "cola", "model": "m", "seed": "42"}, "config.seed"),
]


@pytest.mark.parametrize("models, config, fragment", WRONG_MANIFESTS)
@pytest.mark.parametrize("command", ["export", "report", "latency", "deploy", "gate"])
def test_wrong_typed_manifest_fields(command, models, config, fragment, tmp_path, capsys):
    run = _run_with_manifest(tmp_path, models, config)
    args = {"export": ["export", "--run", str(run)], "report": ["report", "--run", str(run)],
            "latency": ["latency", "--run", str(run)],
            "deploy": ["deploy", "--run", str(run), "--target", "cpu", "--depth", "2", "--out", str(tmp_path / "b")],
            "gate": ["gate", str(run), str(run)]}[command]
    assert_refused(cli(capsys, *args), fragment)


def _latency_doc(**measurement) -> dict:
    m = {"key": "depth-02/fp32/b1/s8/t1", "model": "depth-02", "variant": "fp32", "depth": 2, "batch": 1, "seq": 8,
         "threads": 1, "summary_s": {"p50": 0.001, "cv": None}, "samples_s": [[0.001, 0.002]]}
    m.update(measurement)
    return {"format": "glp-bench-latency", "version": 1, "measurements": [m]}


@pytest.mark.parametrize("field, value", [("batch", "1"), ("depth", None), ("key", 5), ("summary_s", [1]),
                                          ("samples_s", [["fast"]]), ("samples_s", 0.1), ("variant", ["fp32"])])
def test_wrong_typed_latency_fields(field, value, tmp_path, capsys):
    from glp_bench.bench.results import load
    from glp_bench.core.errors import RunDirError

    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(_latency_doc(**{field: value})))
    with pytest.raises(RunDirError, match=rf"measurements\[0\]\.{field}"):
        load(path)
    (tmp_path / "c.onnx").write_bytes(b"x")
    assert_refused(cli(capsys, "gate", "--baseline", str(path), str(tmp_path / "c.onnx")), f"measurements[0].{field}")


def test_a_valid_latency_file_still_loads(tmp_path):
    from glp_bench.bench.results import load

    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(_latency_doc()))
    assert load(path)["measurements"][0]["batch"] == 1


@pytest.mark.parametrize("content", [b"", b"\x08\x01garbage", b"not onnx at all" * 50])
def test_gate_on_a_corrupt_onnx_file_is_bad_input(content, tmp_path, capsys):
    bad, other = tmp_path / "bad.onnx", tmp_path / "other.onnx"
    bad.write_bytes(content)
    other.write_bytes(b"\x00\xff" * 30)
    assert_refused(cli(capsys, "gate", str(bad), str(other), "--rounds", "1"), "not a loadable onnx model")


# --- JSON files never hold NaN or infinity ---------------------------------------------------------------
def test_json_writes_are_strict(tmp_path):
    import numpy as np

    from glp_bench.core.jsonio import atomic_write_json

    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": math.nan, "b": [np.float32("inf"), 1.5], "c": np.array([np.nan, 2.0])})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == \
        {"a": None, "b": [None, 1.5], "c": [None, 2.0]}
