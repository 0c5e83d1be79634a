"""The score gate's two sides: what a user passes, resolved to a model, its tokenizer and its task, and the
model's logits on dev examples through ONNX Runtime.

A side is

* a **run directory** or anything the time gate resolves (``glp_bench.gate.inputs.resolve_model``: an export
  folder, a depth folder, an ``.onnx`` file; ``--model`` / ``--variant`` pick the file). The run it lies in
  (the folder itself, or up to three levels above the file) gives the task, the max length and the data
  folder; the tokenizer is the one beside the ONNX file (export writes it there) or the depth's ``model/``.
  An ``.onnx`` file outside a run needs ``--task`` (and ``--data-dir``) and scores at max length 128.
* a **bundle** (``bundle.json``; ``glp-bench deploy``): scored by ``glp_runtime.Classifier``, the runtime
  that serves it (checksums verified). A bundle of a custom task needs its task file (``--task``).

Logits come from the one session builder (``glp_runtime.session`` via ``glp_bench.export.validate.make_session``
or the runtime's Classifier) and export's scoring (``predict_onnx``, batched as ``scoring_batch_size`` says:
int8 one input at a time, as it is served).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import GateInputError
from ..core.records import DEFAULT_MAX_LENGTH
from ..core.rundir import RunDir

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spm.model", "sentencepiece.bpe.model")


@dataclass
class Side:
    role: str  # baseline | candidate
    source: str  # as given
    kind: str  # run | folder | file | bundle
    path: Path  # the ONNX file, or the bundle folder
    variant: str | None
    model: str | None = None
    run: Path | None = None  # the run the model belongs to
    task: object = None  # glp_bench.data.tasks.Task from the run or the bundle; None: from --task
    task_name: str | None = None  # a bundle's task name (its definition is not in the bundle)
    tokenizer_dir: Path | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    data_dir: str | None = None  # the run's data folder
    info: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"source": self.source, "kind": self.kind, "path": str(self.path), "model": self.model,
                "variant": self.variant, "run": str(self.run) if self.run else None,
                "task": self.task.name if self.task is not None else self.task_name, "max_length": self.max_length}


def _run_of(onnx: Path) -> Path | None:
    for folder in list(onnx.parents)[:3]:
        if RunDir.is_run(folder):
            return folder
    return None


def _tokenizer_dir(onnx: Path, run: RunDir | None, model: str | None) -> Path | None:
    places = [onnx.parent, onnx.parent.parent / "model"]
    if run is not None and model:
        places.append(run.model_dir(model))
    return next((p for p in places if any((p / f).is_file() for f in TOKENIZER_FILES)), None)


def _quantized(onnx: Path) -> bool:
    from .structure import facts

    try:
        return bool(facts(onnx)["families"].get("quantized matmul"))
    except Exception:  # noqa: BLE001 - an unreadable file is reported when its session is built
        return False


def config_labels(config: Path) -> list[str] | None:
    """The class names a transformers ``config.json`` beside an ONNX file gives (None: absent or generic
    ``LABEL_k`` names, which say nothing about the task)."""
    import json
    import re

    try:
        id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") or {}
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return None if not names or all(re.fullmatch(r"LABEL_\d+", n) for n in names) else names


def _bundle(spec: str, role: str, variant: str | None) -> Side:
    import glp_runtime as rt

    from ..data.resolve import get_task
    from ..data.tasks import TASKS

    try:
        b = rt.load_bundle(spec)
    except rt.BundleError as e:
        raise GateInputError(f"{role} {spec}: {e}") from None
    got = (b.runtime.get("model") or {}).get("variant")
    if variant and got and variant != got:
        raise GateInputError(f"{role} {spec} is a bundle of the {got} variant, not {variant}; drop --variant "
                             "(a bundle holds one model)")
    name = b.runtime["task"]["name"]
    return Side(role, spec, "bundle", Path(spec), got, model=(b.manifest.get("model") or {}).get("name"),
                task=get_task(name) if name in TASKS else None, task_name=name, max_length=b.max_length,
                info={"labels": b.labels, "text_keys": b.text_keys})


def resolve_side(spec: str, role: str, model: str | None = None, variant: str | None = None) -> Side:
    """One side of the score gate (GateInputError when it cannot be found or used)."""
    from ..data.resolve import task_of_run
    from ..export.variants import VARIANTS
    from .inputs import resolve_model

    if variant is not None and variant not in VARIANTS:
        raise GateInputError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if (Path(spec) / "bundle.json").is_file():
        return _bundle(spec, role, variant)
    if Path(spec).suffix == ".json":
        raise GateInputError(f"{spec}: the score gate compares two models (runs, folders, .onnx files or bundles); "
                             "a stored latency file is a timing baseline (drop --scores)")
    onnx, info = resolve_model(spec, model, variant)
    run_path = Path(spec) if info["kind"] == "run" else _run_of(onnx.resolve())
    run = RunDir(run_path).load() if run_path else None
    variant = info.get("variant") or ("int8" if _quantized(onnx) else None)
    side = Side(role, spec, info["kind"], onnx, variant, model=info.get("model"), run=run_path)
    if run is not None:
        side.task = task_of_run(run.config) if run.cfg.task else None
        side.max_length = run.cfg.max_length
        side.data_dir = run.cfg.data_dir
    side.info["labels"] = config_labels(onnx.parent / "config.json")
    side.tokenizer_dir = _tokenizer_dir(onnx, run, side.model)
    if side.tokenizer_dir is None:
        raise GateInputError(f"{role} {onnx}: no tokenizer beside it (tokenizer.json, vocab.txt, ...); put the model's "
                             "tokenizer files in its folder (glp-bench export writes them there)")
    return side


def same_task(a, b) -> list[str]:
    """What differs between two tasks that must be the same (name, labels, text columns)."""
    out = []
    if a.name != b.name:
        out.append(f"task {a.name} vs {b.name}")
    if tuple(a.label_names) != tuple(b.label_names):
        out.append(f"labels {list(a.label_names) or 'regression'} vs {list(b.label_names) or 'regression'}")
    if tuple(a.text_keys) != tuple(b.text_keys):
        out.append(f"text columns {list(a.text_keys)} vs {list(b.text_keys)}")
    return out


def common_task(sides: list[Side], task_spec: str | None):
    """The task both sides belong to; GateInputError when they differ or none is known."""
    from ..data.resolve import get_task

    given = get_task(task_spec) if task_spec else None
    for s in sides:
        if s.task is None and s.kind == "bundle" and given is None:
            raise GateInputError(f"{s.role} {s.source} is a bundle of custom task {s.task_name!r}: pass its task "
                                 "file with --task TASK.toml")
        if s.task is None and s.kind == "bundle":
            if s.task_name != given.name or s.info["labels"] != list(given.label_names):
                raise GateInputError(f"{s.role} {s.source} is a bundle of task {s.task_name!r} with labels "
                                     f"{s.info['labels']}, --task {task_spec} is {given.name!r} with labels "
                                     f"{list(given.label_names)}; pass the bundle's own task file")
            s.task = given
    known = [s for s in sides if s.task is not None]
    for s in sides:
        labels, task = s.info.get("labels"), s.task or given
        if s.kind != "bundle" and labels and task is not None and not task.is_regression \
                and labels != list(task.label_names):
            raise GateInputError(f"{s.role} {s.path}: its config.json names labels {labels}, task {task.name} has "
                                 f"{list(task.label_names)}; it is a model of another task")
    if given is not None:
        for s in known:
            diff = same_task(s.task, given)
            if diff:
                raise GateInputError(f"{s.role} {s.source} is a model of another task than --task {task_spec} "
                                     f"({'; '.join(diff)}); both models must be of the task being scored")
    if len(known) == 2:
        diff = same_task(known[0].task, known[1].task)
        if diff:
            raise GateInputError(f"the baseline and the candidate are models of different tasks ({'; '.join(diff)}); "
                                 "the score gate compares two models of the same task and label set")
    task = given or (known[0].task if known else None)
    if task is None:
        raise GateInputError(f"{sides[0].source} and {sides[1].source} lie outside a run directory: pass --task "
                             "(a GLUE task or a .toml task file) and, for a GLUE task other than the bundled CoLA, --data-dir")
    for s in sides:
        s.task = s.task or task
    return task


def _check_shape(side: Side, logits: np.ndarray, n: int, task) -> np.ndarray:
    width = task.num_labels
    if logits.ndim == 1 and width == 1:
        logits = logits.reshape(-1, 1)
    if logits.shape != (n, width):
        raise GateInputError(f"{side.role} {side.path} outputs {logits.shape[-1] if logits.ndim else 0} value(s) per "
                             f"example but task {task.name} needs {width} ({'regression' if task.is_regression else 'one per label'}); "
                             "it is a model of another task")
    return logits


def side_logits(side: Side, dev, task, provider: str, threads: int | None = None) -> np.ndarray:
    """``side``'s logits on the dev split ``dev`` (a datasets split with the task's text columns and label)."""
    from ..export.validate import make_session, predict_onnx, scoring_batch_size

    n = len(dev)
    if side.kind == "bundle":
        import glp_runtime as rt

        try:
            clf = rt.Classifier.load(side.path, provider=provider, threads=threads)
            items = list(zip(*(dev[k] for k in task.text_keys), strict=True))
            logits = clf.logits(items, batch_size=None if clf.batch_invariant else 1)
        except (rt.BundleError, rt.InputError) as e:
            raise GateInputError(f"{side.role} {side.path}: {e}") from None
        return _check_shape(side, np.asarray(logits), n, task)
    from ..prune.models import load_tokenizer
    from ..prune.train import tokenize

    session = make_session(side.path, provider, threads)
    tokenizer = load_tokenizer(str(side.tokenizer_dir))
    encoded = tokenize(dev, tokenizer, task, side.max_length)
    logits = predict_onnx(session, encoded, tokenizer, scoring_batch_size(side.variant))
    return _check_shape(side, logits, n, task)
