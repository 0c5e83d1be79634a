"""GLUE task registry: text fields, labels, metrics exactly as GLUE reports them, dev splits.

Pure: no I/O. Metrics come from scikit-learn / scipy. Scores are fractions in [0, 1] (GLUE's
leaderboard shows them x100, as "points"); a Matthews correlation of 0.0 is a valid score.

Column and label names follow the Hugging Face ``nyu-mll/glue`` dataset; ``GlueLayout`` says how
GLUE's original TSV files map onto them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import TaskError


def _accuracy(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score

    return {"accuracy": float(accuracy_score(labels, preds))}


def _f1_accuracy(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"f1": float(f1_score(labels, preds)), "accuracy": float(accuracy_score(labels, preds))}


def _matthews(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import matthews_corrcoef

    return {"matthews_correlation": float(matthews_corrcoef(labels, preds))}


def _pearson_spearman(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    return {"pearson": float(pearsonr(preds, labels)[0]), "spearmanr": float(spearmanr(preds, labels)[0])}


@dataclass(frozen=True)
class GlueLayout:
    """How GLUE's original distribution stores a split: file name, header, and column positions.

    ``columns`` maps our column name -> column in the TSV (a header name, or an index when
    ``header`` is False). ``label_map`` turns GLUE's string labels into class ids.
    """

    files: Mapping[str, str]  # split -> file name
    header: bool
    columns: Mapping[str, str | int]
    label_map: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Task:
    name: str
    glue_dir: str  # folder name in GLUE's distribution
    text_keys: tuple[str, ...]  # one sentence or a pair
    label_names: tuple[str, ...]  # empty for regression
    metric_fn: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    main_metric: str  # used for selection (search) and the headline score
    dev_splits: tuple[str, ...] = ("validation",)
    layout: GlueLayout | None = None
    # A custom task's definition (glp_bench.data.task_def): its files, columns, labels, metrics. None for GLUE.
    definition: Mapping | None = field(default=None, compare=False, hash=False)

    @property
    def is_custom(self) -> bool:
        return self.definition is not None

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def main_dev_key(self) -> str:
        """Key of the headline score in the flat dict returned by ``dev_scores``."""
        return score_key(self.main_metric, self.dev_splits[0], self.dev_splits)

    def predictions(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits)
        if self.is_regression:
            return logits.reshape(-1).astype(np.float64)
        return logits.argmax(axis=-1)

    def compute(self, logits: np.ndarray, labels: Sequence) -> dict[str, float]:
        """All of the task's metrics for one split, from model outputs (logits) and gold labels."""
        labels = np.asarray(labels)
        if len(labels) == 0:
            raise TaskError(f"{self.name}: cannot score an empty split")
        return self.metric_fn(self.predictions(logits), labels)

    def loss(self, logits: np.ndarray, labels: Sequence) -> float:
        """Mean held-out loss: cross-entropy for classification, squared error for regression."""
        from scipy.special import softmax
        from sklearn.metrics import log_loss, mean_squared_error

        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
        if self.is_regression:
            return float(mean_squared_error(labels, logits.reshape(-1)))
        return float(log_loss(labels, softmax(logits, axis=-1), labels=list(range(self.num_labels))))


def score_key(metric: str, split: str, splits: Sequence[str]) -> str:
    """``metric`` for single-dev-split tasks, ``<split>/<metric>`` when there are several (MNLI)."""
    return metric if len(splits) == 1 else f"{split}/{metric}"


def flatten_scores(task: Task, per_split: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {score_key(m, s, task.dev_splits): v for s in task.dev_splits for m, v in per_split[s].items()}


_PAIR = ("sentence1", "sentence2")
_ENTAIL = {"entailment": 0, "not_entailment": 1}

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), _matthews, "matthews_correlation",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, False,
                              {"sentence": 3, "label": 1}),
        ),
        Task(
            "sst2", "SST-2", ("sentence",), ("negative", "positive"), _accuracy, "accuracy",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, True,
                              {"sentence": "sentence", "label": "label"}),
        ),
        Task(
            "mrpc", "MRPC", _PAIR, ("not_equivalent", "equivalent"), _f1_accuracy, "f1",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, True,
                              {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}),
        ),
        Task(
            "stsb", "STS-B", _PAIR, (), _pearson_spearman, "pearson",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, True,
                              {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}),
        ),
        Task(
            "qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), _f1_accuracy, "f1",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, True,
                              {"question1": "question1", "question2": "question2", "label": "is_duplicate"}),
        ),
        Task(
            "mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), _accuracy,
            "accuracy", dev_splits=("validation_matched", "validation_mismatched"),
            layout=GlueLayout(
                {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                 "validation_mismatched": "dev_mismatched.tsv"},
                True, {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
                {"entailment": 0, "neutral": 1, "contradiction": 2},
            ),
        ),
        Task(
            "qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"), _accuracy, "accuracy",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, True,
                              {"question": "question", "sentence": "sentence", "label": "label"}, _ENTAIL),
        ),
        Task(
            "rte", "RTE", _PAIR, ("entailment", "not_entailment"), _accuracy, "accuracy",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, True,
                              {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}, _ENTAIL),
        ),
        Task(
            "wnli", "WNLI", _PAIR, ("not_entailment", "entailment"), _accuracy, "accuracy",
            layout=GlueLayout({"train": "train.tsv", "validation": "dev.tsv"}, True,
                              {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
        ),
    ]
}
