"""The GLUE registry's metrics on known labels, checked against the metrics' textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glp_bench.core.errors import TaskError
from glp_bench.data.resolve import get_task
from glp_bench.data.tasks import TASKS


def onehot(preds, n=2):
    out = np.full((len(preds), n), -1.0)
    out[np.arange(len(preds)), preds] = 1.0
    return out


def test_all_nine_glue_tasks():
    assert sorted(TASKS) == sorted(["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"])
    assert get_task("mnli").dev_splits == ("validation_matched", "validation_mismatched")
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").num_labels == 3
    assert get_task("rte").text_keys == ("sentence1", "sentence2") and get_task("cola").text_keys == ("sentence",)
    assert get_task("SST-2") is TASKS["sst2"]
    with pytest.raises(TaskError, match="unknown task 'colaa'"):
        get_task("colaa")


def test_matthews_against_formula():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 1, 0, 1])
    preds = np.array([1, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    tp, tn = np.sum((preds == 1) & (labels == 1)), np.sum((preds == 0) & (labels == 0))
    fp, fn = np.sum((preds == 1) & (labels == 0)), np.sum((preds == 0) & (labels == 1))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    scores = get_task("cola").compute(onehot(preds), labels)
    assert scores == {"matthews_correlation": pytest.approx(mcc)}
    assert get_task("cola").main_metric == "matthews_correlation"


def test_matthews_zero_is_a_valid_score():
    labels = np.array([0, 1, 1, 0, 1])
    scores = get_task("cola").compute(onehot(np.ones(5, dtype=int)), labels)  # constant predictor
    assert scores["matthews_correlation"] == 0.0


def test_f1_and_accuracy_for_mrpc_and_qqp():
    labels = np.array([1, 0, 1, 1, 0, 1])
    preds = np.array([1, 1, 0, 1, 0, 1])
    tp, fp, fn = 3, 1, 1
    for name in ("mrpc", "qqp"):
        scores = get_task(name).compute(onehot(preds), labels)
        assert scores["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert scores["accuracy"] == pytest.approx(4 / 6)
        assert get_task(name).main_metric == "f1"


def test_stsb_pearson_spearman():
    labels = np.array([0.0, 1.0, 2.5, 4.0, 5.0])
    logits = np.array([[0.1], [0.9], [3.0], [3.5], [4.9]])
    s = get_task("stsb").compute(logits, labels)
    assert s["pearson"] == pytest.approx(np.corrcoef(logits[:, 0], labels)[0, 1])
    assert s["spearmanr"] == pytest.approx(1.0)  # same ranks


def test_accuracy_tasks_and_mnli_keys():
    labels = np.array([0, 1, 2, 2])
    preds = np.array([0, 1, 1, 2])
    assert get_task("mnli").compute(onehot(preds, 3), labels) == {"accuracy": 0.75}
    assert get_task("mnli").main_dev_key == "validation_matched/accuracy"
    assert get_task("cola").main_dev_key == "matthews_correlation"
    for name in ("sst2", "qnli", "rte", "wnli"):
        assert get_task(name).compute(onehot(preds[:2]), labels[:2]) == {"accuracy": 1.0}


def test_loss():
    task = get_task("cola")
    confident = np.array([[-5.0, 5.0], [5.0, -5.0]])
    assert task.loss(confident, [1, 0]) < 0.01 < task.loss(confident, [0, 1])
    assert get_task("stsb").loss(np.array([[1.0], [3.0]]), [2.0, 3.0]) == pytest.approx(0.5)


def test_empty_split_is_an_error():
    with pytest.raises(TaskError, match="empty"):
        get_task("cola").compute(np.zeros((0, 2)), [])
