"""`glp-bench gate --scores` end to end: real ONNX sessions on real dev examples.

The checked-in pair (benchmarks/score_pair, remade by benchmarks/score_pair.py) has a known answer: good.onnx
is ~100% accurate on its dev set, worse.onnx (the same model with its classifier weights zeroed) answers one
class. A run directory, its depth folders and a bundle deployed from it resolve like the time gate's inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_clean_error, assert_schema, run_cli

PAIR = REPO / "benchmarks" / "score_pair"
GOOD, WORSE, TASK = str(PAIR / "good.onnx"), str(PAIR / "worse.onnx"), str(PAIR / "task.toml")


def gate(*args, json_path: Path | None = None):
    extra = ("--json", str(json_path)) if json_path else ()
    return run_cli("gate", "--scores", *args, *extra, timeout=600)


def dev_rows() -> int:
    return len((PAIR / "dev.csv").read_text().strip().splitlines()) - 1


def test_the_checked_in_pair_is_small_and_complete():
    files = {p.name for p in PAIR.iterdir()}
    assert {"good.onnx", "worse.onnx", "task.toml", "train.csv", "dev.csv", "tokenizer.json"} <= files
    assert sum(p.stat().st_size for p in PAIR.iterdir()) < 1_000_000


def test_a_worse_model_fails_and_the_same_model_passes(tmp_path):
    proc = gate(GOOD, WORSE, "--task", TASK, json_path=tmp_path / "worse.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = assert_schema(tmp_path / "worse.json", "score_gate")
    assert doc["format"] == "glp-bench-score-gate" and doc["verdict"] == "regression" and doc["exit_code"] == 1
    d = doc["decision"]
    assert doc["task"]["name"] == "goodbad" and doc["task"]["examples"] == d["n_examples"] == dev_rows()
    assert doc["baseline"]["score"] > 0.95 and doc["candidate"]["score"] <= 0.6
    assert d["delta"] == pytest.approx(100 * (doc["candidate"]["score"] - doc["baseline"]["score"]))
    assert d["hi"] < -d["max_drop"] and d["examples_p"] < 1e-6
    assert "REGRESSION (exit 1)" in proc.stdout and "McNemar" in proc.stdout

    proc = gate(GOOD, GOOD, "--task", TASK, json_path=tmp_path / "same.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "same.json").read_text())
    assert doc["verdict"] == "no regression" and doc["decision"]["delta"] == doc["decision"]["lo"] == 0.0
    assert "NO REGRESSION (exit 0)" in proc.stdout


def test_undecided_when_the_line_lies_inside_the_interval(tmp_path):
    """The pair's drop is ~50 points: with --max-drop at the drop itself, it could be worse by more or not."""
    assert gate(GOOD, WORSE, "--task", TASK, "--resamples", "200", json_path=tmp_path / "a.json").returncode == 1
    drop = -json.loads((tmp_path / "a.json").read_text())["decision"]["delta"]
    proc = gate(GOOD, WORSE, "--task", TASK, "--resamples", "200", "--max-drop", f"{drop:g}")
    assert_clean_error(proc, "could not decide")
    assert "UNDECIDED (exit 2)" in proc.stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from tests.test_latency import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("score-gate-run"))


def test_run_folders_and_a_bundle_of_the_same_model_agree(tiny_run, tmp_path):
    """The run's full-depth fp32 model, its depth folder and its bundle (scored by glp_runtime) predict the same
    on CoLA's dev set (the bundled copy): no difference at all."""
    bundle = tmp_path / "bundle"
    proc = run_cli("deploy", "--run", str(tiny_run), "--target", "cpu", "--depth", "4", "--variant", "fp32",
                   "--out", str(bundle), "--no-check")
    assert proc.returncode == 0, proc.stderr
    proc = gate(str(tiny_run), str(bundle), json_path=tmp_path / "b.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = assert_schema(tmp_path / "b.json", "score_gate")
    assert doc["baseline"]["kind"] == "run" and doc["baseline"]["model"] == "depth-04"
    assert doc["candidate"]["kind"] == "bundle" and doc["task"]["name"] == "cola"
    assert doc["decision"]["examples_counts"] == {"baseline_only_right": 0, "candidate_only_right": 0}
    cola_dev = REPO / "glp_bench" / "data" / "bundled" / "cola" / "dev.tsv"
    assert doc["task"]["examples"] == len(cola_dev.read_text().strip().splitlines())  # all of CoLA's dev split

    proc = gate(str(tiny_run / "depth-02"), str(tiny_run / "depth-02" / "onnx" / "model.int8.onnx"), "--variant",
                "int8", json_path=tmp_path / "i.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the same file on both sides
    doc = json.loads((tmp_path / "i.json").read_text())
    assert doc["baseline"]["kind"] == "folder" and doc["baseline"]["path"].endswith("depth-02/onnx/model.int8.onnx")
    assert doc["baseline"]["run"] == str(tiny_run) and doc["candidate"]["variant"] == "int8"


def test_bad_input_is_one_clear_line(tiny_run, tmp_path):
    assert_clean_error(gate(str(tiny_run), GOOD, "--task", TASK), "another task than --task")
    assert_clean_error(gate(GOOD, WORSE), "pass --task")
    assert_clean_error(gate(GOOD, WORSE, "--task", TASK, "--rounds", "3"), "--rounds is for the timing gate")
    assert_clean_error(run_cli("gate", GOOD, WORSE, "--max-drop", "2"), "add --scores")
    assert_clean_error(gate(GOOD, WORSE, "--task", TASK, "--variant", "fp33"), "unknown variant 'fp33'")
    assert_clean_error(gate(GOOD, WORSE, "--task", TASK, "--resamples", "20"), "use at least 100")
    assert_clean_error(gate(GOOD, WORSE, "--task", TASK, "--alpha", "0.7"), "below 0.5")
    assert_clean_error(gate(str(tiny_run), str(tiny_run), "--model", "nope"), "no exported model 'nope'")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy2(GOOD, lone / "model.onnx")
    assert_clean_error(gate(str(lone / "model.onnx"), GOOD, "--task", TASK), "no tokenizer beside it")
    assert_clean_error(gate(GOOD, WORSE, "--task", "cola"), "labels ['bad', 'good']")  # config.json beside it
