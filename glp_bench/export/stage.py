"""ONNX export of every fine-tuned depth of a run, validated against PyTorch on real dev inputs.

For each finished model of a run directory (``RunDir.finished_models``):

1. ``optimum.exporters.onnx.onnx_export_from_model`` (task text-classification, dynamic batch and sequence
   axes; the model as glp-bench loads it, with its pooling) writes ``depth-NN/onnx/model.onnx`` plus config and tokenizer (so the folder deploys alone);
2. the requested variants are built from it (``glp_bench.export.variants``);
3. every file is run with ONNX Runtime on real dev batches (batch 1 at the shortest, median and longest
   length; a larger batch of mixed lengths, padded dynamically and to max_length) and compared with
   PyTorch: fp32 graphs must agree within 1e-4 (optimum only warns; here a failure fails the depth);
4. every file is scored on the full dev split(s) through ONNX Runtime, next to the PyTorch score, so
   lossy variants (int8, fp16) are judged by the score of the artifact that will be deployed.

Results go to the manifest's model record, ``onnx.<variant>`` (``RunDir.record_export``) (saved after every variant) and to
``depth-NN/onnx/export.json``. A depth that fails is recorded with its numbers and the error; the
others carry on; ``ExportReport.raise_for_failures`` makes the command exit non-zero at the end.
Re-running skips variants whose file, source weights, opset and preset are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..core.diskerrors import disk_fault
from ..core.errors import ExportError, GlpError, ModelError, RunDirError
from ..core.jsonio import atomic_write_json, sha256_file, stamp
from ..core.rundir import RunDir, now
from .int8 import build_int8
from .int8_select import resolve_candidate
from .quant_exclude import DEFAULT_MAX_QUANT_DROP, calibration_batches, check_max_quant_drop
from .validate import (
    CUDA,
    compare,
    make_session,
    require_provider,
    score_main,
    score_onnx,
    torch_logits,
    validation_batches,
)
from .variants import DEFAULT_VARIANTS, VARIANTS, build_variant, parse_variants, resolve_preset

EXPORT_FORMAT = "glp-bench-export"
EXPORT_VERSION = 1
DEFAULT_OPSET = 18
MIN_OPSET = 14  # scaled_dot_product_attention exports from opset 14 on
QUANT_DECISION = "train-heldout"  # where int8's fp32 nodes are chosen (older int8 files decided on dev: rebuilt)


@dataclass
class ExportOptions:
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    opset: int = DEFAULT_OPSET
    quant_preset: str = "auto"
    force: bool = False  # rebuild even what is up to date
    revalidate: bool = False  # only re-validate and re-score the files on disk
    int8_candidate: str = "auto"  # glp_bench.export.int8_select: auto = build, time and keep the fastest
    max_quant_drop: float = DEFAULT_MAX_QUANT_DROP  # GLUE points int8 may lose vs fp32 (glp_bench.export.quant_exclude)


@dataclass
class ExportReport:
    run_dir: Path
    main_key: str  # headline dev metric key
    records: dict[str, dict] = field(default_factory=dict)  # model name -> {variant: record}
    skipped: dict[str, list[str]] = field(default_factory=dict)  # model name -> up-to-date variants
    int8_choice: dict = field(default_factory=dict)  # the int8 candidate timed once per run, reused

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        return [(m, v, r.get("error", "failed")) for m, recs in self.records.items()
                for v, r in recs.items() if r.get("status") != "ok"]

    def raise_for_failures(self) -> None:
        fails = self.failures
        if fails:
            names = sorted({m for m, _, _ in fails})
            m, v, err = fails[0]
            raise ExportError(
                f"{len(fails)} export(s) failed in {len(names)} model(s) ({', '.join(names)}); "
                f"first: {m} {v}: {err}. Details in {self.run_dir}/<model>/onnx/export.json; "
                "the models that passed are kept"
            )


# --- pieces ---------------------------------------------------------------------------------


def weights_digest(model_dir: Path) -> str:
    """sha256 over the folder's weight files: tells whether an ONNX file is stale."""
    files = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
    if not files:
        raise ModelError(f"{model_dir} has no weights (*.safetensors or *.bin); re-run 'glp-bench prune' for it")
    return hashlib.sha256("".join(f"{p.name}:{sha256_file(p)}\n" for p in files).encode()).hexdigest()


def load_torch_model(model_dir: Path):
    from ..prune.models import load_saved_classifier

    return load_saved_classifier(model_dir)


def export_fp32(model_dir: Path, out_dir: Path, opset: int) -> None:
    """optimum export of ``model_dir`` into ``out_dir`` (model.onnx, config, tokenizer), atomically. The model is
    loaded by glp-bench (``load_saved_classifier``: its pooling, ``glp_bench.prune.pooling``, is traced into the
    graph) and handed to ``onnx_export_from_model``, the call ``main_export`` makes after loading."""
    import logging

    from optimum.exporters.onnx import onnx_export_from_model
    from optimum.utils.save_utils import maybe_load_preprocessors

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's TracerWarnings about constant masks are expected
        level = logging.getLogger("optimum").level
        logging.getLogger("optimum").setLevel(logging.ERROR)
        try:
            onnx_export_from_model(load_torch_model(model_dir), tmp, opset=opset, task="text-classification",
                                   preprocessors=maybe_load_preprocessors(str(model_dir)),
                                   do_validation=False)  # validated below on real inputs, failing loudly
        finally:
            logging.getLogger("optimum").setLevel(level)
        files = sorted(Path(tmp).iterdir(), key=lambda p: p.name == "model.onnx")  # model.onnx last
        for f in files:
            if f.is_file():
                os.replace(f, out_dir / f.name)


def _is_current(rec: dict | None, path: Path, **expected) -> bool:
    return bool(rec and rec.get("status") == "ok" and path.is_file() and rec.get("sha256") == sha256_file(path)
                and all(rec.get(k) == v for k, v in expected.items()))


def evaluate_file(path: Path, variant: str, batches, reference, dev, tokenizer, task) -> dict:
    """Validation against PyTorch and dev scores of one ONNX file (raises ExportError/DeviceError)."""
    spec = VARIANTS[variant]
    t0 = time.perf_counter()
    session = make_session(path, spec.provider)
    per_batch = compare(session, batches, reference)
    diff = max(b["max_abs_diff"] for b in per_batch)
    t1 = time.perf_counter()
    scores = score_onnx(session, dev, tokenizer, task, variant)
    t2 = time.perf_counter()
    passed = spec.tolerance is None or diff <= spec.tolerance
    return {
        "validation": {"max_abs_diff": diff, "tolerance": spec.tolerance, "passed": passed, "batches": per_batch},
        "dev_scores": scores,
        "seconds": {"validate": t1 - t0, "score": t2 - t1},
    }


# --- one model ------------------------------------------------------------------------------


def export_model(run: RunDir, name: str, opts: ExportOptions, preset: tuple[str, str], task, dev_for,
                 report: ExportReport, step=None, calib_for=None, decide_for=None) -> None:
    """Export, build variants, validate and score one model; records every variant's outcome."""
    model_dir = run.model_dir(name)
    out_dir = run.onnx_dir(name)
    old = {v: e.raw for v, e in run.model(name).onnx.items()}
    records: dict[str, dict] = {}
    report.records[name] = records
    step = step or (lambda _msg, _advance=0: None)

    def finish(variant: str, record: dict) -> None:
        records[variant] = record
        run.record_export(name, variant, record)
        run.save()
        step(f"{name} {variant}: {record['status']}", 1)

    def fail_all(err: str, variants) -> None:
        for v in variants:
            finish(v, {"path": run.relative(out_dir / VARIANTS[v].filename), "provider": VARIANTS[v].provider,
                       "status": "failed", "error": err})

    try:
        step(f"{name}: loading the PyTorch model")
        model = load_torch_model(model_dir)
        source = weights_digest(model_dir)
        dev, tokenizer, max_length = dev_for(model_dir)
        batches = validation_batches(dev[task.dev_splits[0]], tokenizer, max_length)
        reference = torch_logits(model, batches)
        del model
    except GlpError as e:
        fail_all(str(e), opts.variants)
        _write_export_json(run, name, out_dir, opts, preset, records)
        return

    fp32_path = out_dir / VARIANTS["fp32"].filename
    fp32_fresh = False
    model_config = None
    for variant in opts.variants:
        spec = VARIANTS[variant]
        path = out_dir / spec.filename
        expected = {"source_sha256": source, "opset": opts.opset}
        if variant == "int8":
            expected.update(preset=preset[0], int8_candidate=opts.int8_candidate, max_quant_drop=opts.max_quant_drop,
                            quant_decision=QUANT_DECISION)
        if not opts.force and not opts.revalidate and not fp32_fresh and _is_current(old.get(variant), path, **expected):
            records[variant] = old[variant]
            report.skipped.setdefault(name, []).append(variant)
            step(f"{name} {variant}: up to date", 1)
            continue
        if not opts.revalidate and variant != "fp32" and records.get("fp32", {}).get("status") != "ok":
            fail_all("not built: the fp32 export of this model failed", [variant])
            continue
        if opts.revalidate:  # keep what is known about how the file was built; replace the verdict
            record = {k: v for k, v in (old.get(variant) or {}).items() if k not in _VERDICT}
            record.update(path=run.relative(path), provider=spec.provider, revalidated=now())
        else:
            record = {"path": run.relative(path), "provider": spec.provider, **expected, "exported": now()}
        changed = False  # revalidate: the file differs from the one recorded at export (checked first)
        try:
            t0 = time.perf_counter()
            if opts.revalidate:
                if not path.is_file():
                    raise ExportError(f"{path} does not exist; run 'glp-bench export' without --revalidate to build it")
                changed = bool(record.get("sha256")) and record["sha256"] != sha256_file(path)
                record["changed_since_export"] = changed
            else:
                step(f"{name} {variant}: building")
                if variant == "fp32":
                    export_fp32(model_dir, out_dir, opts.opset)
                    fp32_fresh = True
                else:
                    if model_config is None:
                        from transformers import AutoConfig

                        model_config = AutoConfig.from_pretrained(out_dir)
                    if variant == "int8":
                        held, held_tok, where = decide_for(model_dir) if decide_for else (None, None, None)
                        record["build"] = build_int8(
                            fp32_path, model_config, preset[0], choice=opts.int8_candidate,
                            max_quant_drop=opts.max_quant_drop, model=name, chosen=report.int8_choice,
                            on_chosen=lambda choice: _save_int8_choice(run, choice),
                            calib=calib_for(model_dir) if calib_for else None, decided_on=where,
                            decide=None if held is None else
                            (lambda p, v, h=held, t=held_tok: score_main(make_session(p), h, t, task, v)))
                    else:
                        record["build"] = build_variant(variant, fp32_path, model_config, preset[0])
            build_s = time.perf_counter() - t0
            digest = sha256_file(path)  # an edited file keeps its recorded sha256: never re-blessed
            record.update(size=path.stat().st_size, **({"sha256_on_disk": digest} if changed else {"sha256": digest}))
            step(f"{name} {variant}: validating and scoring")
            result = evaluate_file(path, variant, batches, reference, dev, tokenizer, task)
            if not opts.revalidate:
                result["seconds"] = {"build": build_s, **result["seconds"]}
            record.update(result)
            errors = [f"{path.name} was edited since it was exported (its sha256 differs from the recorded one); "
                      "re-export it with 'glp-bench export --force'"] if changed else []
            if not result["validation"]["passed"]:
                errors.append(f"max |logit difference| vs PyTorch {result['validation']['max_abs_diff']:.3g} "
                              f"exceeds the tolerance {spec.tolerance:g}")
            record.update({"status": "failed", "error": "; ".join(errors)} if errors else {"status": "ok"})
        except GlpError as e:
            record.update(status="failed", error=str(e))
        except Exception as e:  # noqa: BLE001 - a library failing on one model must not lose the others
            if disk_fault(e):
                raise  # a full or read-only disk fails every model alike: stop, the CLI says which
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            record.update(status="failed", error=f"{type(e).__name__}: {first}"[:500])
        finish(variant, record)
    _write_export_json(run, name, out_dir, opts, preset, records)


_VERDICT = ("status", "error", "validation", "dev_scores", "seconds", "changed_since_export", "sha256_on_disk")


def _write_export_json(run: RunDir, name: str, out_dir: Path, opts: ExportOptions, preset, records: dict) -> None:
    if not out_dir.parent.is_dir():
        return  # the model's folder is gone; the manifest records the failure
    rec = run.model(name)
    atomic_write_json(run.export_json(name), stamp(EXPORT_FORMAT, EXPORT_VERSION, {
        "model": name, "depth": rec.depth, "kept_layers": rec.kept_layers,
        "task": run.cfg.task,
        # this invocation's options; each variant's record says what its file was built with
        "options": {"mode": "revalidate" if opts.revalidate else "export", "variants": opts.variants,
                    "opset": opts.opset, "quant_preset": preset[0], "quant_preset_reason": preset[1],
                    "int8_candidate": opts.int8_candidate, "max_quant_drop": opts.max_quant_drop},
        "pytorch_dev_scores": rec.dev_scores,
        "status": "ok" if all(r.get("status") == "ok" for r in records.values()) else "failed",
        "variants": records,
    }))


# --- a whole run ----------------------------------------------------------------------------


def recorded_int8_choice(run: RunDir, opts: ExportOptions, preset: str) -> dict:
    """The int8 candidate an earlier (killed) export of this run timed and chose, when it still applies (same
    preset, same CPU), so that a resumed export ships what an uninterrupted one would; ``--force`` times again."""
    from ..core.machine import cpu_model

    if opts.force:
        run.drop_section("int8_choice")  # saved with the first record
        return {}
    rec = run.section("int8_choice")
    if opts.int8_candidate != "auto" or not isinstance(rec, dict) or not rec.get("winner"):
        return {}
    if rec.get("preset") != preset or rec.get("cpu_model") != cpu_model():
        return {}
    return dict(rec)


def _save_int8_choice(run: RunDir, choice: dict) -> None:
    """Record the run's int8 choice the moment it is made (atomically, with the manifest)."""
    from ..core.machine import cpu_model

    run.set_section("int8_choice", {**choice, "cpu_model": cpu_model(), "chosen": now()})
    run.save()


def check_writable(run: RunDir, models) -> None:
    """The run and every folder export writes into can be written (a read-only run is refused before work)."""
    from ..core.preflight import writable_dir

    writable_dir(run.path, "--run")
    for name in models:
        for folder in (run.onnx_dir(name), run.onnx_dir(name).parent):
            if folder.exists():
                writable_dir(folder, f"--run (folder of {name})")


def _split_loader(task, splits: dict, max_length: int):
    """``model_dir -> ({name: tokenized split}, tokenizer)`` for ``splits``, tokenizing once per tokenizer."""
    from ..prune.models import load_tokenizer
    from ..prune.train import tokenize

    cache: dict[str, tuple] = {}

    def get(model_dir: Path):
        tok_files = sorted(p for p in model_dir.iterdir() if p.name.startswith(("tokenizer", "vocab", "merges",
                                                                                 "special_tokens", "spm", "sentencepiece")))
        key = "".join(f"{p.name}:{sha256_file(p)}" for p in tok_files)
        if key not in cache:
            tokenizer = load_tokenizer(str(model_dir))
            cache[key] = ({s: tokenize(ds, tokenizer, task, max_length) for s, ds in splits.items()}, tokenizer)
        return cache[key]

    return get


def _dev_loader(task, data, max_length: int):
    """``model_dir -> (tokenized dev splits, tokenizer, max_length)``: validation and the reported scores."""
    get = _split_loader(task, {s: data[s] for s in task.dev_splits}, max_length)

    def dev(model_dir: Path):
        encoded, tokenizer = get(model_dir)
        return encoded, tokenizer, max_length

    return dev


def _decision_loader(task, data, max_length: int, seed: int):
    """``model_dir -> (tokenized split, tokenizer, where)``: the 15% of *train* that GLP's search held out
    (``search_split``, the run's seed), on which export makes its choices; ``(None, None, None)`` when empty."""
    from ..data.loaders import search_split

    train = data["train"]
    held = search_split(train, seed)[1] if len(train) >= 2 else train.select([])
    get = _split_loader(task, {QUANT_DECISION: held}, max_length)
    where = {"split": QUANT_DECISION, "of": "train", "fraction": 0.15, "seed": seed, "examples": len(held),
             "note": "the search's held-out examples; the final models were fine-tuned on all of train"}

    def decide(model_dir: Path):
        if len(held) == 0:
            return None, None, None
        encoded, tokenizer = get(model_dir)
        return encoded[QUANT_DECISION], tokenizer, where

    return decide


def _calib_loader(task, data, max_length: int):
    """``model_dir -> calibration batches`` from the *train* split (int8 selection and sensitivity)."""
    from ..prune.models import load_tokenizer

    def get(model_dir: Path):
        return calibration_batches(data["train"], load_tokenizer(str(model_dir)), task, max_length)

    return get


def check_opset(opset: int) -> int:
    import onnx

    top = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise ExportError(f"--opset {opset} is not supported; use {MIN_OPSET}..{top} (default {DEFAULT_OPSET})")
    return opset


def export_run(run_dir: str | os.PathLike, variants=DEFAULT_VARIANTS, opset: int = DEFAULT_OPSET,
               data_dir: str | None = None, quant_preset: str = "auto", force: bool = False,
               revalidate: bool = False, progress=None, int8_candidate: str = "auto",
               max_quant_drop: float = DEFAULT_MAX_QUANT_DROP) -> ExportReport:
    """Export every fine-tuned model of ``run_dir``. Input problems (no run, no fine-tuned depths,
    unknown variant, fp16 without CUDA, missing data) raise before any work; per-model problems
    are recorded as failed and the rest carries on (see ``ExportReport.raise_for_failures``)."""
    from ..data.identity import check_data_unchanged
    from ..data.loaders import load_task_data
    from ..data.resolve import task_of_run

    run = RunDir(run_dir).load()
    opts = ExportOptions(parse_variants(variants), check_opset(opset), quant_preset, force, revalidate,
                         resolve_candidate(int8_candidate), check_max_quant_drop(max_quant_drop))
    models = run.finished_models()
    if not models:
        raise ExportError(f"{run.path} has no fine-tuned models (none with dev scores); run 'glp-bench prune' first")
    if "fp16" in opts.variants:
        require_provider(CUDA, "the fp16 variant")
    preset = resolve_preset(quant_preset)
    cfg = run.cfg
    if not cfg.task:
        raise RunDirError(f"{run.manifest_path} names no task in its config; it was not written by 'glp-bench prune'")
    task = task_of_run(run.config)
    check_data_unchanged(run, task, data_dir or cfg.data_dir, "export")
    check_writable(run, models)
    data = load_task_data(task, data_dir or cfg.data_dir)
    dev_for = _dev_loader(task, data, cfg.max_length)
    calib_for = _calib_loader(task, data, cfg.max_length)
    decide_for = _decision_loader(task, data, cfg.max_length, cfg.seed)
    report = ExportReport(run.path, task.main_dev_key)
    report.int8_choice = recorded_int8_choice(run, opts, preset[0])

    task_id = progress.add_task("export", total=len(models) * len(opts.variants)) if progress is not None else None

    def step(msg: str, advance: int = 0) -> None:
        if progress is not None:
            progress.update(task_id, description=msg, advance=advance)

    for name in models:
        export_model(run, name, opts, preset, task, dev_for, report, step, calib_for, decide_for)
    if progress is not None:
        progress.update(task_id, description="export")
    return report
