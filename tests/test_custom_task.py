"""Custom tasks: definitions (TOML, flags, a run's stored copy), their metrics, and the data checks that
name the file, the row and the problem."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from glp_bench.core.errors import DataError, TaskError
from glp_bench.data.loaders import describe_data, load_task_data
from glp_bench.data.resolve import get_task, task_of_run
from glp_bench.data.task_def import build, from_flags, read_toml


def write_csv(path, header, rows, sep=","):
    path.write_text("\n".join([sep.join(header), *(sep.join(map(str, r)) for r in rows)]) + "\n", encoding="utf-8")
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def toml(tmp_path, body: str, name="task.toml"):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def intents(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "intent"], [("my card was charged twice", "billing"),
                                                           ("the app crashes", "bug"), ("hello there", "other")])
    write_csv(tmp_path / "dev.csv", ["text", "intent"], [("refund my payment", "billing"), ("it froze", "bug")])
    return toml(tmp_path, 'name = "intents"\ntrain = "train.csv"\ndev = "dev.csv"\nlabel = "intent"\n'
                          'labels = ["billing", "bug", "other"]\nmetrics = ["accuracy", "f1"]\nmain_metric = "f1"\n')


def test_toml_definition_single_sentence_classification(intents, tmp_path):
    task = get_task(str(intents))  # --task path/to/task.toml
    assert task.name == "intents" and task.is_custom and task.text_keys == ("text",)
    assert task.label_names == ("billing", "bug", "other") and task.main_metric == "f1"
    assert task.definition["train"] == str((tmp_path / "train.csv").resolve())  # relative to the TOML file
    data = load_task_data(task, "/ignored/for/custom/tasks")
    assert data["train"]["label"] == [0, 1, 2] and data["validation"]["label"] == [0, 1]
    assert data["validation"]["text"] == ["refund my payment", "it froze"]
    assert describe_data(task, None).startswith("data: ") and "train.csv" in describe_data(task, None)
    # the run config stores the definition: the task comes back from it alone, and survives pickling (Ray)
    again = task_of_run({"task": "intents", "task_def": task.definition})
    assert again.definition == task.definition and again.label_names == task.label_names
    assert pickle.loads(pickle.dumps(again)).compute(np.eye(3)[[0, 1, 2]], [0, 1, 1])["accuracy"] == pytest.approx(2 / 3)


def test_metrics_registry_against_sklearn(intents):
    from sklearn.metrics import f1_score, matthews_corrcoef

    task = build({**read_toml(intents), "metrics": ["accuracy", "f1", "mcc"]})
    labels, preds = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 2, 2, 2, 1, 1])
    got = task.compute(np.eye(3)[preds], labels)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["f1"] == pytest.approx(f1_score(labels, preds, average="macro"))  # 3 classes: macro F1
    assert got["mcc"] == pytest.approx(matthews_corrcoef(labels, preds))
    binary = build(from_flags("yesno", str(intents.parent / "train.csv"), str(intents.parent / "dev.csv"), None,
                              "intent", "no,yes", False, "f1", None))
    b_labels, b_preds = np.array([1, 0, 1, 1]), np.array([1, 1, 0, 1])
    assert binary.compute(np.eye(2)[b_preds], b_labels) == {"f1": pytest.approx(2 * 2 / (2 * 2 + 1 + 1))}


def test_jsonl_pair_regression_and_class_ids(tmp_path):
    rows = [{"q": "how old", "a": "ten years", "score": 4.5}, {"q": "where", "a": "blue", "score": "0.5"}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "dev.jsonl", rows[:1] + [{"q": "who", "a": "me", "score": 3}])
    task = build(from_flags("sim", str(tmp_path / "train.jsonl"), str(tmp_path / "dev.jsonl"), "q,a", "score",
                            None, True, None, None))
    assert task.is_regression and task.text_keys == ("q", "a") and task.metric_fn.names == ("pearson", "spearman")
    assert task_of_run({"task": "sim", "task_def": task.definition}).is_regression  # the stored copy too
    data = load_task_data(task)
    assert data["train"]["label"] == [4.5, 0.5] and data["validation"]["a"] == ["ten years", "me"]
    logits = np.array([[0.0], [1.0], [2.5]])
    assert task.compute(logits, [0.0, 1.0, 3.0])["spearman"] == pytest.approx(1.0)
    # class ids (0..n-1) stand for the label names; tsv and parquet read the same way
    write_csv(tmp_path / "tr.tsv", ["sentence", "label"], [("a b", 1), ("c d", "neg")], sep="\t")
    import pandas as pd

    pd.DataFrame({"sentence": ["e f"], "label": ["pos"]}).to_parquet(tmp_path / "dv.parquet")
    cls = build(from_flags("pn", str(tmp_path / "tr.tsv"), str(tmp_path / "dv.parquet"), "sentence", None,
                           "neg,pos", False, "accuracy,mcc", "mcc"))
    data = load_task_data(cls)
    assert data["train"]["label"] == [1, 0] and data["validation"]["label"] == [1] and cls.main_metric == "mcc"


BAD_DEFS = [
    ('train = "train.csv"\ndev = "dev.csv"\nlabels = ["a", "b"]', "name must be"),
    ('name = "cola"\ntrain = "train.csv"\ndev = "dev.csv"\nlabels = ["a", "b"]', "is a GLUE task's"),
    ('name = "t"\ntrain = "train.csv"\nlabels = ["a", "b"]', "dev file missing"),
    ('name = "t"\ntrain = "nope.csv"\ndev = "dev.csv"\nlabels = ["a", "b"]', "nope.csv does not exist"),
    ('name = "t"\ntrain = "train.txt"\ndev = "dev.csv"\nlabels = ["a", "b"]', "must end in .csv"),
    ('name = "t"\ntrain = "train.csv"\ndev = "dev.csv"', "give the label names"),
    ('name = "t"\ntrain = "train.csv"\ndev = "dev.csv"\nlabels = ["a"]', "at least two distinct"),
    ('name = "t"\ntrain = "train.csv"\ndev = "dev.csv"\nlabels = ["a", "b"]\nmetrics = ["pearson"]',
     "do not apply to classification"),
    ('name = "t"\ntrain = "train.csv"\ndev = "dev.csv"\nregression = true\nmetrics = ["f1"]',
     "do not apply to regression"),
    ('name = "t"\ntrain = "train.csv"\ndev = "dev.csv"\nlabels = ["a", "b"]\nmain_metric = "mcc"',
     "main_metric 'mcc' is not among"),
    ('name = "t"\ntrain = "train.csv"\ndev = "dev.csv"\nlabels = ["a", "b"]\ntext = ["a", "b", "c"]',
     "two for a pair task"),
    ('name = "t"\ntrain = "train.csv"\ndev = "dev.csv"\nlabels = ["a", "b"]\nlabel_col = "y"', "unknown key"),
    ('name = "t"\ntrain = ', "is not valid TOML"),
]


@pytest.mark.parametrize("body,fragment", BAD_DEFS)
def test_bad_definitions_are_one_clear_error(tmp_path, body, fragment):
    write_csv(tmp_path / "train.csv", ["text", "label"], [("x", "a")])
    write_csv(tmp_path / "dev.csv", ["text", "label"], [("x", "a")])
    with pytest.raises(TaskError, match=fragment):
        get_task(str(toml(tmp_path, body)))
    with pytest.raises(TaskError, match="does not exist"):
        get_task(str(tmp_path / "missing.toml"))


def _classes(tmp_path, train_name="train.csv", dev_name="dev.csv"):
    return build(from_flags("t", str(tmp_path / train_name), str(tmp_path / dev_name), None, None, "neg,pos",
                            False, None, None))


def test_bad_data_names_file_row_and_problem(tmp_path):
    good = [("fine", "pos"), ("bad", "neg")]
    write_csv(tmp_path / "dev.csv", ["text", "label"], good)
    # a label outside the label set: row 3 of the data is line 4 of the file (after the header)
    write_csv(tmp_path / "train.csv", ["text", "label"], [*good, ("meh", "neutral")])
    with pytest.raises(DataError, match=r"train.csv row 3 \(line 4\): label 'neutral' .* not in the label set"):
        load_task_data(_classes(tmp_path))
    write_csv(tmp_path / "train.csv", ["text", "label"], [*good, ("meh", 2)])  # class id out of range
    with pytest.raises(DataError, match="row 3 .*label '2'"):
        load_task_data(_classes(tmp_path))
    # a missing column
    write_csv(tmp_path / "train.csv", ["sentence", "label"], good)
    with pytest.raises(DataError, match=r"train.csv lacks column\(s\) \['text'\]"):
        load_task_data(_classes(tmp_path))
    # an empty split (a header only), and an empty file
    write_csv(tmp_path / "train.csv", ["text", "label"], [])
    with pytest.raises(DataError, match="train.csv holds no examples"):
        load_task_data(_classes(tmp_path))
    (tmp_path / "train.csv").write_text("")
    with pytest.raises(DataError, match="train.csv is empty"):
        load_task_data(_classes(tmp_path))
    # not UTF-8 (Latin-1 bytes on line 3)
    (tmp_path / "train.csv").write_bytes("text,label\nfine,pos\ncaf\u00e9,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match="train.csv: line 3 is not UTF-8"):
        load_task_data(_classes(tmp_path))
    # a jsonl row without its text
    write_jsonl(tmp_path / "train.jsonl", [{"text": "fine", "label": "pos"}, {"label": "neg"}])
    with pytest.raises(DataError, match=r"train.jsonl row 2 \(line 2\): no text in column 'text'"):
        load_task_data(_classes(tmp_path, "train.jsonl"))
    # dev is checked like train
    write_csv(tmp_path / "train.csv", ["text", "label"], good)
    write_csv(tmp_path / "dev.csv", ["text", "label"], [("x", "maybe")])
    with pytest.raises(DataError, match="dev.csv row 1"):
        load_task_data(_classes(tmp_path))


def test_non_numeric_regression_target(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "y"], [("a", "1.5"), ("b", "high")])
    write_csv(tmp_path / "dev.csv", ["text", "y"], [("a", "1.5")])
    task = build(from_flags("r", str(tmp_path / "train.csv"), str(tmp_path / "dev.csv"), None, "y", None, True,
                            None, None))
    with pytest.raises(DataError, match=r"train.csv row 2 \(line 3\): regression target 'high' .* not a number"):
        load_task_data(task)


def test_custom_flags_need_train(tmp_path):
    import argparse

    from glp_bench.data.resolve import task_from_args
    from glp_bench.data.task_def import add_args

    p = argparse.ArgumentParser()
    p.add_argument("--task")
    add_args(p)
    assert task_from_args(p.parse_args(["--task", "cola"])).name == "cola"
    with pytest.raises(TaskError, match="--labels defines a custom task and needs --train"):
        task_from_args(p.parse_args(["--task", "cola", "--labels", "a,b"]))


def test_tasks_command_shows_a_definition_that_works(tmp_path, capsys):
    from glp_bench import cli
    from glp_bench.data.task_def import EXAMPLE

    assert cli.main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert EXAMPLE in out and "--task my-task.toml" in out and "bundled" in out
    write_csv(tmp_path / "train.csv", ["text", "label"], [("card charged twice", "billing"), ("crash", "bug")])
    write_csv(tmp_path / "dev.csv", ["text", "label"], [("hi", "other")])
    task = get_task(str(toml(tmp_path, EXAMPLE, "tickets.toml")))  # the example, as printed, is a valid task
    assert task.name == "tickets" and load_task_data(task)["validation"]["label"] == [2]
