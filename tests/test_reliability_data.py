"""Issues 31, 28.5 and 32.13: users' own files and options that got through -- digit-like labels, non-finite or
out-of-range targets, a --max-length beyond the model's positions, a train split too small for the 85/15 split
or holding one class, a report over deleted model files, an empty --drop-layers, an unknown gate --variant --
each one line, exit 2, before any work; and the plan's time estimate for short and finished runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import ARCHS, build_tiny_model, tiny_config, write_cola
from .test_reliability_inputs import assert_refused, cli

GOLDEN_RUN = Path(__file__).parent / "golden" / "cola-tiny"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data-edges")
    return build_tiny_model("bert", root / "m", layers=2), write_cola(root / "glue" / "CoLA", n_train=16, n_dev=8)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    return path


def custom_args(tmp_path: Path, train: list, dev: list, *task: str) -> list[str]:
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "dev.csv", dev)
    return ["--task", "t", "--train", str(tmp_path / "train.csv"), "--dev", str(tmp_path / "dev.csv"), *task]


def prune(model, tmp_path, *args) -> list[str]:
    return ["prune", *args, "--model", str(model), "--budget", "smoke", "--device", "cpu", "--run", str(tmp_path / "run")]


GOOD = [(f"the good cat {i}", "pos" if i % 2 else "neg") for i in range(8)]


# --- 31.1: labels and targets that Python's int()/float() would take or choke on ------------------------------
@pytest.mark.parametrize("label", ["\u00b2", "\uff11", "\u0661", "\u00bd", "+1", "-0", "1\x00", "1.0", "pos\u200b"])
def test_a_label_only_int_could_read_is_refused_naming_file_row_and_value(label, tiny, tmp_path, capsys):
    model, _ = tiny
    args = custom_args(tmp_path, [*GOOD, ("odd", label)], GOOD[:2], "--labels", "neg,pos")
    code, err = cli(capsys, "finetune", *args, "--model", str(model), "--device", "cpu", "--out", str(tmp_path / "ft"))
    assert_refused((code, err), f"train.csv row 9 (line 10): label {label!r}")
    assert "not in the label set ['neg', 'pos'] nor a class id 0-1" in err
    if not label.isascii() and any(c.isdigit() or c.isnumeric() for c in label):
        assert "ASCII digits" in err  # the fix for a digit-like character
    assert not (tmp_path / "ft").exists()


def test_ascii_class_ids_and_padded_names_still_read(tmp_path):
    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.task_def import build, from_flags

    args = custom_args(tmp_path, [("a", " 1 "), ("b", "01"), ("c", "neg"), ("d", "0")], [("e", "pos")])
    task = build(from_flags("t", args[3], args[5], None, None, "neg,pos", False, None, None))
    assert list(load_task_data(task)["train"]["label"]) == [1, 1, 0, 0]


@pytest.mark.parametrize("value, fragment", [
    ("inf", "'inf' in column 'y' is not a finite number"), ("-Infinity", "is not a finite number"),
    ("nan", "'nan' in column 'y' is not a finite number"), ("1e400", "not a finite number"),
    ("1e39", "beyond float32's range"), ("\u0661", "ASCII digits 0-9"), ("1_000", "'1_000' in column 'y' is not a number"),
    ("0x10", "is not a number"), ("\uff12.5", "ASCII digits"), ("", "'' in column 'y' is not a number")])
def test_a_regression_target_that_is_not_a_finite_ascii_number_is_refused(value, fragment, tiny, tmp_path, capsys):
    model, _ = tiny
    rows = [(f"text {i}", f"{i / 2}") for i in range(8)]
    (tmp_path / "train.csv").write_text("text,y\n" + "".join(f"{t},{y}\n" for t, y in [*rows[:3], ("x", value)]),
                                        encoding="utf-8")
    (tmp_path / "dev.csv").write_text("text,y\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    code, err = cli(capsys, *prune(model, tmp_path, "--task", "r", "--train", str(tmp_path / "train.csv"), "--dev",
                                   str(tmp_path / "dev.csv"), "--label-column", "y", "--regression"))
    assert_refused((code, err), "train.csv row 4 (line 5): regression target")
    assert fragment in err
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_json_numbers_inf_and_booleans_are_refused_as_targets(tmp_path):
    from glp_bench.core.errors import DataError
    from glp_bench.data.custom import load_split
    from glp_bench.data.task_def import build

    task = build({"name": "r", "train": "x", "dev": "x", "text": ["text"], "label": "y", "regression": True,
                  "labels": [], "metrics": ["pearson"], "main_metric": "pearson"})
    for bad, fragment in (("Infinity", "row 2 (line 2): regression target inf"), ("true", "target True"),
                          ("1e39", "beyond float32's range")):
        (tmp_path / "t.jsonl").write_text(f'{{"text": "a", "y": 1.5}}\n{{"text": "b", "y": {bad}}}\n')
        with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            load_split(task, tmp_path / "t.jsonl")


@pytest.mark.parametrize("names", [["false", "true"], ["False", "True"]])
def test_boolean_labels_match_their_names(names, tmp_path):
    import pandas as pd

    from glp_bench.data.custom import load_split
    from glp_bench.data.task_def import build

    task = build({"name": "b", "train": "x", "dev": "x", "text": ["text"], "label": "y", "regression": False,
                  "labels": names, "metrics": ["accuracy"], "main_metric": "accuracy"})
    pd.DataFrame({"text": ["a", "b", "c"], "y": [True, False, True]}).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "b.jsonl").write_text('{"text": "a", "y": false}\n{"text": "b", "y": true}\n')
    assert list(load_split(task, tmp_path / "b.parquet")["label"]) == [1, 0, 1]
    assert list(load_split(task, tmp_path / "b.jsonl")["label"]) == [0, 1]


def test_glue_regression_labels_must_be_finite(tmp_path):
    from glp_bench.core.errors import DataError
    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task

    folder = tmp_path / "STS-B"
    folder.mkdir()
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    rows = "".join(f"{i}\tg\tf\ty\t{i}\ts\ts\ta cat {i}\ta dog\t{v}\n" for i, v in enumerate(["1.0", "inf", "2.5"]))
    (folder / "train.tsv").write_text(head + rows)
    (folder / "dev.tsv").write_text(head + rows.replace("inf", "3.0"))
    with pytest.raises(DataError, match=r"train.tsv: 1 stsb label\(s\) are not finite numbers \(first: 'inf'\)"):
        load_task_data(get_task("stsb"), folder)


@pytest.mark.parametrize("labels", ['[" neg", "pos"]', '["neg", "pos\\u00a0"]'])
def test_label_names_with_invisible_padding_are_refused(labels, tmp_path):
    from glp_bench.core.errors import TaskError
    from glp_bench.data.resolve import get_task

    write_csv(tmp_path / "train.csv", GOOD)
    write_csv(tmp_path / "dev.csv", GOOD)
    (tmp_path / "t.toml").write_text(f'name = "t"\ntrain = "train.csv"\ndev = "dev.csv"\nlabels = {labels}\n')
    with pytest.raises(TaskError, match="surrounding spaces or invisible characters"):
        get_task(str(tmp_path / "t.toml"))


# --- 31.2: --max-length against the model's positions --------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_max_sequence_length_is_what_the_model_can_embed(arch):
    """The limit is real: a forward pass at the limit works, one token more fails (roberta-likes and MPNet start
    their positions after the padding index)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from glp_bench.prune.models import max_sequence_length

    config = tiny_config(arch, layers=1)
    limit = max_sequence_length(config)
    assert limit == {"roberta": 159, "mpnet": 158}.get(arch, 160)  # 160 positions in the tiny configs
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        model(input_ids=torch.full((1, limit), 6))
        with pytest.raises((IndexError, RuntimeError)):
            model(input_ids=torch.full((1, limit + 1), 6))


def test_relative_only_positions_have_no_limit():
    from transformers import DebertaV2Config

    from glp_bench.prune.models import max_sequence_length

    assert max_sequence_length(DebertaV2Config(max_position_embeddings=512, position_biased_input=False)) is None
    assert max_sequence_length(DebertaV2Config(max_position_embeddings=512, position_biased_input=True)) == 512


@pytest.mark.parametrize("length", ["161", "1000", "100000"])
def test_finetune_refuses_a_max_length_beyond_the_positions_before_work(length, tiny, tmp_path, capsys):
    model, data = tiny
    assert_refused(cli(capsys, "finetune", "--task", "cola", "--model", str(model), "--data-dir", str(data),
                       "--device", "cpu", "--max-length", length, "--out", str(tmp_path / "ft")),
                   f"--max-length {length} is beyond what {model} can read: 160 tokens (160 position embeddings)")
    assert not (tmp_path / "ft").exists()


@pytest.mark.parametrize("command", ["prune", "prune-and-export"])
def test_prune_takes_max_length_and_refuses_one_beyond_the_positions(command, tiny, tmp_path, capsys):
    model, data = tiny
    args = [command, "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
            "--device", "cpu", "--run", str(tmp_path / "run")]
    assert_refused(cli(capsys, *args, "--max-length", "161"), "use --max-length 160 or less")
    assert not (tmp_path / "run").exists()


def test_the_plan_carries_max_length_into_every_fine_tune_and_the_run_config():
    from glp_bench.prune.plan import make_plan

    plan = make_plan("cola", "m", None, ["glp"], "smoke", pooling="cls", max_length=64)
    assert plan.search.max_length == plan.final.max_length == plan.config(4)["max_length"] == 64
    assert make_plan("cola", "m", None, ["glp"], "smoke", pooling="cls").config(4)["max_length"] == 128


# --- 31.3, 31.5, 31.6: splits a search or a classifier cannot use -------------------------------------------
def test_min_search_rows_follows_the_split_rule():
    from datasets import Dataset

    from glp_bench.data.checks import min_search_rows

    need = min_search_rows()
    assert need == 7
    for n, ok in ((need - 1, False), (need, True)):
        parts = Dataset.from_dict({"x": list(range(n))}).train_test_split(test_size=0.15, seed=0)
        assert (len(parts["train"]) >= 2 and len(parts["test"]) >= 2) is ok


@pytest.mark.parametrize("rows", [1, 3, 6])
def test_prune_refuses_a_train_split_too_small_for_the_85_15_split(rows, tiny, tmp_path, capsys):
    model, _ = tiny
    train = [(f"t {i}", "pos" if i % 2 else "neg") for i in range(rows)]
    if rows == 1:
        train.append(("t 1", "pos"))  # two rows, two classes: the size is what is wrong
    code, err = cli(capsys, *prune(model, tmp_path, *custom_args(tmp_path, train, GOOD, "--labels", "neg,pos")))
    assert_refused((code, err), f"train.csv holds {len(train)} row(s)")
    assert "needs at least 7 rows (2 in each part)" in err
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_one_class_train_split_is_refused_by_prune_and_finetune(tiny, tmp_path, capsys):
    model, _ = tiny
    args = custom_args(tmp_path, [(f"t {i}", "pos") for i in range(9)], GOOD, "--labels", "neg,pos")
    assert_refused(cli(capsys, *prune(model, tmp_path, *args)), "train.csv holds one class only ('pos', 9 rows)")
    assert not (tmp_path / "run" / "manifest.json").exists()
    assert_refused(cli(capsys, "finetune", *args, "--model", str(model), "--device", "cpu", "--out",
                       str(tmp_path / "ft")), "add rows of another class")
    assert not (tmp_path / "ft").exists()


@pytest.mark.parametrize("split", ["train", "dev"])
def test_constant_regression_targets_are_refused(split, tiny, tmp_path, capsys):
    model, _ = tiny
    varied = [(f"t {i}", f"{i}.5") for i in range(8)]
    flat = [(f"t {i}", "2") for i in range(8)]
    args = custom_args(tmp_path, flat if split == "train" else varied, flat if split == "dev" else varied,
                       "--regression")
    assert_refused(cli(capsys, *prune(model, tmp_path, *args)), f"{split}.csv: every regression target is 2")


# --- 31.7: a report over deleted files ---------------------------------------------------------------------
def _golden_copy(tmp_path: Path, with_files: bool) -> Path:
    run = Path(shutil.copytree(GOLDEN_RUN, tmp_path / "cola-tiny"))
    if with_files:  # the files the manifest records (empty stand-ins: report only looks for them)
        for rec in json.loads((run / "manifest.json").read_text())["models"].values():
            (run / rec["path"]).mkdir(parents=True, exist_ok=True)
            for onnx in (rec.get("onnx") or {}).values():
                (run / onnx["path"]).parent.mkdir(parents=True, exist_ok=True)
                (run / onnx["path"]).write_bytes(b"")
    return run


def test_report_names_models_whose_files_are_gone(tmp_path, capsys):
    run = _golden_copy(tmp_path, with_files=True)
    code, _ = cli(capsys, "report", "--run", str(run), "--format", "markdown", "-o", str(tmp_path / "r.md"))
    assert code == 0 and "files missing" not in (tmp_path / "r.md").read_text()
    shutil.rmtree(run / "depth-03")  # a deleted depth folder
    (run / "depth-02" / "onnx" / "model.int8.onnx").unlink()  # one variant gone
    from glp_bench.cli import main

    assert main(["report", "--run", str(run)]) == 0  # the table on stdout says it too
    assert "files missing in" in " ".join(capsys.readouterr().out.split())
    code, _ = cli(capsys, "report", "--run", str(run), "--format", "markdown", "-o", str(tmp_path / "r.md"))
    text = " ".join((tmp_path / "r.md").read_text().split())
    assert code == 0
    assert f"files missing in {run}: depth-03 (its folder); depth-02 (int8)" in text
    assert "cannot be deployed or measured" in text and "depth-04 (" not in text


def test_report_says_when_a_directory_holds_the_records_only(tmp_path, capsys):
    from glp_bench.report.stage import build_report

    run = _golden_copy(tmp_path, with_files=False)
    notes = [n for s in build_report([run]).sections for n in s.notes]
    assert any("holds the run's records only (no model or ONNX file)" in n for n in notes)


# --- 28.5: options that were silently ignored ----------------------------------------------------------
@pytest.mark.parametrize("value, fragment", [("", "names no layer"), (" , ", "names no layer"),
                                             ("1,,2", "an empty entry"), ("\u0661", "not a layer index in ASCII"),
                                             ("1;2", "'1;2' is not a layer index")])
def test_finetune_drop_layers_that_drops_nothing_is_refused(value, fragment, tiny, tmp_path, capsys):
    model, data = tiny
    assert_refused(cli(capsys, "finetune", "--task", "cola", "--model", str(model), "--data-dir", str(data),
                       "--device", "cpu", "--drop-layers", value, "--out", str(tmp_path / "ft")), fragment)
    assert not (tmp_path / "ft").exists()


def test_gate_variant_is_never_ignored_on_onnx_files(tmp_path, capsys):
    a, b = tmp_path / "a.onnx", tmp_path / "model.onnx"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    assert_refused(cli(capsys, "gate", str(a), str(b), "--variant", "fp33"), "unknown variant 'fp33'; choose from")
    assert_refused(cli(capsys, "gate", str(a), str(b), "--variant", "int8"),
                   f"--variant int8 but {b} is the fp32 file")


# --- 32.13: the plan's estimate ------------------------------------------------------------------------
def test_eta_text():
    from glp_bench.prune.work import eta_text

    assert eta_text(12, False) == "estimated <1 min"
    assert eta_text(59.9, False) == "estimated <1 min"
    assert eta_text(540, False) == "estimated 9 min"
    assert eta_text(540, True) == "estimated 9 min left (resuming)"


def test_finals_left_counts_shared_layer_sets_once():
    from glp_bench.prune.work import finals_left

    layers, steps = [0, 1, 2, 3], [{"chosen": 3}, {"chosen": 1}]  # GLP removed 3 then 1; top removes 3 then 2
    assert finals_left(layers, 2, ["glp", "top"], 42, 1, steps, {}) == (4, 4)  # {0123, 012, 02, 01}
    models = {f"m{i}": {"kept_layers": k, "dev_scores": {"mcc": 0.1}}
              for i, k in enumerate([[0, 1, 2, 3], [0, 1, 2], [0, 2], [0, 1]])}
    assert finals_left(layers, 2, ["glp", "top"], 42, 1, steps, models) == (4, 0)  # finished: nothing left
    assert finals_left(layers, 2, ["glp", "top"], 42, 2, steps, models) == (4, 4)  # a second seed each
    assert finals_left(layers, 2, ["glp"], 42, 1, steps[:1], {}) == (3, 3)  # one GLP depth not decided yet


def test_a_custom_task_scores_in_points_not_glue_points(tmp_path):
    import dataclasses

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from glp_bench.report.plot import _panel
    from glp_bench.report.render import caption
    from glp_bench.report.stage import build_report

    glue = build_report([_golden_copy(tmp_path, with_files=False)]).sections[0]
    custom = dataclasses.replace(glue, task="mood")  # the same rows, a task of one's own
    assert "dev score in GLUE points (x 100)" in caption(glue, 1.0)
    assert "dev score in points (x 100)" in caption(custom, 1.0) and "GLUE" not in caption(custom, 1.0)
    labels = {}
    for name, section in (("glue", glue), ("custom", custom)):
        fig, ax = plt.subplots()
        _panel(ax, section, 1.0)
        labels[name] = ax.get_ylabel()
        plt.close(fig)
    assert labels == {"glue": "dev MCC (GLUE points = MCC x 100)", "custom": "dev MCC (points = MCC x 100)"}


def test_prune_lr_help_names_the_sweep(capsys):
    from glp_bench.cli import main

    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "giving it skips the lr sweep (default: with --recipe auto the sweep's winner" in text
