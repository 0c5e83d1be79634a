"""A custom task through every stage on a tiny model: prune, export (scored through ONNX Runtime), report,
deploy, and the bundle's runtime returning the task's own label names (or a number for regression)."""

from __future__ import annotations

import json
import random

from .conftest import WORDS, assert_clean_error, build_tiny_model, run_cli, sentence
from .test_deploy import read_jsonl, run_runtime

SMOKE = ("--budget", "smoke", "--device", "cpu")


def _pair(rng):
    return " ".join(rng.sample(WORDS[:40], 4)), " ".join(rng.sample(WORDS[:40], 3))


def test_csv_classification_from_toml_through_deploy(tmp_path):
    rng = random.Random(0)
    for split, n in (("train", 64), ("dev", 24)):
        rows = [f"{sentence(rng, i % 2 == 1)},{'happy' if i % 2 else 'sad'}" for i in range(n)]
        (tmp_path / f"{split}.csv").write_text("review,mood\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "mood.toml").write_text(
        'name = "mood"\ntrain = "train.csv"\ndev = "dev.csv"\ntext = "review"\nlabel = "mood"\n'
        'labels = ["sad", "happy"]\nmetrics = ["accuracy", "mcc"]\nmain_metric = "mcc"\n', encoding="utf-8")
    model = build_tiny_model("bert", tmp_path / "m", layers=2)
    run = tmp_path / "run"
    proc = run_cli("prune-and-export", "--task", str(tmp_path / "mood.toml"), "--model", str(model), *SMOKE,
                   "--run", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"data: {tmp_path / 'train.csv'} + {tmp_path / 'dev.csv'}" in " ".join(proc.stderr.split())  # plan line
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["task"] == "mood" and manifest["config"]["task_def"]["labels"] == ["sad", "happy"]
    models = manifest["models"]
    for rec in models.values():
        assert set(rec["dev_scores"]) == {"accuracy", "mcc"}
        assert rec["onnx"]["fp32"]["status"] == "ok" and "mcc" in rec["onnx"]["fp32"]["dev_scores"]  # ORT scores
    assert "MCC" in (run / "report.md").read_text()
    # the run directory alone is enough from now on: the TOML file may go
    (tmp_path / "mood.toml").unlink()
    out = tmp_path / "bundle"
    proc = run_cli("deploy", "--run", str(run), "--target", "cpu", "--depth", "1", "--variant", "fp32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "runtime.json").read_text())["task"]["labels"] == ["sad", "happy"]
    proc = run_runtime("predict", str(out), stdin='{"review": "the good cat ."}\n{"review": "a bad dog ."}\n')
    assert proc.returncode == 0, proc.stderr
    preds = read_jsonl(proc.stdout)
    assert len(preds) == 2 and all(p["label"] in ("sad", "happy") and set(p["scores"]) == {"sad", "happy"}
                                   for p in preds)


def test_jsonl_pair_regression_from_flags_through_deploy(tmp_path):
    rng = random.Random(1)
    for split, n in (("train", 48), ("dev", 16)):
        rows = []
        for _ in range(n):
            q, a = _pair(rng)
            rows.append(json.dumps({"q": q, "a": a, "sim": round(rng.uniform(0, 5), 2)}))
        (tmp_path / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    model = build_tiny_model("bert", tmp_path / "m", layers=2, num_labels=1)
    run = tmp_path / "run"
    flags = ("--task", "sim", "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "dev.jsonl"),
             "--text-column", "q,a", "--label-column", "sim", "--regression", "--metrics", "spearman,pearson")
    proc = run_cli("prune-and-export", *flags, "--model", str(model), *SMOKE, "--run", str(run), "--variants", "fp32")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["task_def"]["text"] == ["q", "a"] and manifest["config"]["task_def"]["main_metric"] == "spearman"
    assert all(set(r["dev_scores"]) == {"spearman", "pearson"} for r in manifest["models"].values())
    out = tmp_path / "bundle"
    proc = run_cli("deploy", "--run", str(run), "--target", "cpu", "--depth", "1", "--variant", "fp32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = run_runtime("predict", str(out), stdin='{"q": "the cat", "a": "a dog"}\n')
    assert proc.returncode == 0, proc.stderr
    (pred,) = read_jsonl(proc.stdout)
    assert isinstance(pred["score"], float), pred


def test_bad_custom_data_is_one_error_before_work(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\nfine,pos\nmeh,neutral\n", encoding="utf-8")
    (tmp_path / "dev.csv").write_text("text,label\nok,pos\n", encoding="utf-8")
    model = build_tiny_model("bert", tmp_path / "m", layers=2)
    proc = run_cli("prune", "--task", "t", "--train", str(tmp_path / "train.csv"), "--dev", str(tmp_path / "dev.csv"),
                   "--labels", "neg,pos", "--model", str(model), *SMOKE, "--run", str(tmp_path / "run"))
    assert_clean_error(proc, "train.csv row 2 (line 3): label 'neutral'")
    assert not (tmp_path / "run" / "manifest.json").exists()  # nothing started
    proc = run_cli("prune", "--task", str(tmp_path / "none.toml"), "--model", str(model), *SMOKE)
    assert_clean_error(proc, "none.toml does not exist")
