"""The deploy stage: select (``glp_bench.deploy.select``), write (``glp_bench.deploy.layout``: a writer per
bundle layout), self-check (``glp_bench.deploy.check``), then rename into place. Deployment bundles: one pruned model of a run, in the ONNX variant a target runs, with everything
needed to serve it without torch, transformers or glp-bench (``deploy/runtime``, package glp_runtime).

Which model: ``--depth N`` (the model of that depth; with several strategies, the run's first strategy
that reached it, or ``--strategy``), or ``--max-drop X``: the artifact ``glp_bench.report.stage.recommend``
picks on the target (the fastest measured one within X GLUE points of the full model).

Which variant (the one rule, :func:`choose_variant`): ``--variant`` when given; with ``--max-drop``,
the recommended artifact's; otherwise, among the variants the target lists (its TOML's ``variants``)
that were exported with status ok, the fastest *measured* on the target (``latency/<target>.json``,
batch-1 balanced median, as the report ranks them), and without measurements the one expected
fastest on the target's device: int8 > fp32-opt > fp32 on a CPU, fp16 > fp32-opt > fp32 on CUDA.
(So ``embedded-arm64``, which lists only int8, deploys int8; ``cpu`` deploys its fastest measured CPU
variant, int8 when not measured; ``cuda`` deploys fp16 when exported, else fp32-opt/fp32.)

Which threads (:func:`choose_threads`): ``--threads`` when given; else the intra-op thread count measured
fastest for the deployed model and variant on the target (``latency/<target>.json``, smallest measured batch);
without measurements of it, the target's default (its last ``threads`` entry; "physical"/"logical" -> 0,
ONNX Runtime's default). Recorded in ``runtime.json`` (``session.intra_op_threads``, what glp_runtime runs
with) and in ``bundle.json`` (``selection.threads``, ``selection.threads_reason``).

The bundle (format ``glp-bench-bundle``, version 1) is written into a temporary folder beside
``--out`` and renamed into place only when complete and checked, so a bundle is never half-written::

    bundle.json     manifest: format, version, created, environment (jsonio.stamp), selection, model,
                    task, target, expected, latency, self_check, warnings, files {name: {size, sha256}}
    runtime.json    for the runtime: task (name, text_keys, labels, main_metric), model (file, variant,
                    inputs, output), tokenizer (file, max_length, truncation_strategy, truncation_side,
                    padding_side, pad_id, pad_token, pad_type_id), session (providers, intra_op_threads,
                    inter_op_threads, spinning, memory_arena, graph_optimization), batch_size
    model.onnx      the chosen variant's file, copied and checked against the run manifest's sha256
    tokenizer.json  the model's fast tokenizer

``expected``: {"main_key", "dev_score" (the variant's main dev score as export scored it through ONNX
Runtime), "dev_scores", "pytorch_dev_scores", "reference": {"model", "dev_score"} (full-depth
PyTorch), "delta_points" (x100)}. ``latency``: {"status": "measured", "source", "target", "emulated",
"headline": {batch, seq, threads, p50_ms, p90_ms, latency_ms (balanced median), speedup_vs_full_fp32,
sequences_per_s, unstable}, "configurations": [per measured batch/seq/threads]} or {"status": "not
measured", "reason"}. ``self_check`` (unless ``--no-check``): the bundle loaded with glp_runtime
(checksums verified), its tokenization compared with transformers' on dev texts and a text longer than
the max length, and the dev split(s) classified by the runtime and scored: {"status", "tokenization",
"dev_scores", "dev_score", "expected", "difference", "examples"}. A failed check writes no bundle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DeployError
from ..core.jsonio import atomic_write_json, publish_permissions, stamp
from ..core.machine import physical_cores
from ..core.rundir import RunDir, now
from .check import self_check
from .layout import (
    FORMAT,
    MANIFEST,
    TOKENIZER,
    VERSION,
    WRITERS,
    Artifact,
    check_out,
    clean_stale,
    expected_section,
    latency_section,
    replace_dir,
    tokenizer_settings,
)
from .select import Selection, _measurements, _row_at, choose_threads, select, session_settings


@dataclass
class DeployResult:
    out: Path
    manifest: dict
    selection: Selection



def deploy(run_dir: str | os.PathLike, target_spec: str, out: str | os.PathLike, **options) -> DeployResult:
    """Write the bundle of the selected model for ``target_spec`` to ``out`` (atomically; options: ``_deploy``).
    One deploy writes a bundle at a time (the lock of the resolved ``out``, ``runlock``); what a killed one left
    beside ``out`` is cleaned up first. A run that another process is writing (an export) is refused."""
    from ..core.runlock import acquire, being_written, describe, release

    out = Path(out).expanduser()
    busy = being_written(run_dir)
    if busy is not None:
        raise DeployError(f"{run_dir} is being written by {describe(busy)}; its results may change under the "
                          "bundle: wait for it to finish, then deploy")
    acquire(out, option="--out")
    try:
        clean_stale(out)
        return _deploy(run_dir, target_spec, out, **options)
    finally:
        release(out, remove=True)


def _deploy(run_dir: str | os.PathLike, target_spec: str, out: Path, depth: int | None = None,
            max_drop: float | None = None, strategy: str | None = None, variant: str | None = None,
            threads: int | None = None, check: bool = True, force: bool = False, data_dir: str | None = None,
            step=None, layout: str = "glp-runtime") -> DeployResult:
    from ..core.targets import resolve_target
    from ..data.loaders import has_local_data, load_task_data
    from ..data.resolve import task_of_run
    from ..export.variants import VARIANTS
    from ..prune.models import load_tokenizer

    step = step or (lambda _msg: None)
    run = RunDir(run_dir).load()
    target = resolve_target(target_spec)
    check_out(out, force)
    if variant is not None and variant not in VARIANTS:
        raise DeployError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if threads is not None and threads < 0:
        raise DeployError(f"--threads must be >= 0 (0 = ONNX Runtime's default), got {threads}")
    task = task_of_run(run.config)
    folder = data_dir or run.cfg.data_dir or os.environ.get("GLP_BENCH_DATA")
    if check:  # the self-check scores the dev set: it must be the one the run was scored on
        from ..data.identity import check_data_unchanged

        check_data_unchanged(run, task, folder, "deploy")
    sel = select(run, target, depth, max_drop, strategy, variant)
    rec = run.model(sel.name)
    onnx_rec = rec.onnx[sel.variant].raw
    src = run.file(onnx_rec["path"])
    max_length = run.cfg.max_length
    warnings = list(sel.warnings)
    if sel.variant not in target.variants:
        warnings.append(f"{sel.variant} is not among the variants target {target.name} lists ({', '.join(target.variants)})")
    if sel.variant == "int8" and target.quantization and onnx_rec.get("preset") not in (None, target.quantization):
        warnings.append(f"the int8 model was quantized with the {onnx_rec.get('preset')} preset but target {target.name} "
                        f"expects {target.quantization}; re-export with 'glp-bench export --run DIR --quant-preset "
                        f"{target.quantization} --force' for the device's kernels")

    threads, threads_reason = choose_threads(target, _measurements(run, target.name), sel.name, sel.variant, threads)
    if sel.row is not None and sel.row.threads != threads and threads_reason != "chosen with --threads":
        sel.row = _row_at(run, target.name, sel.name, sel.variant, threads) or sel.row

    step(f"tokenizer of {sel.name}")
    tok_dir = src.parent if (src.parent / TOKENIZER).is_file() else run.model_dir(sel.name)
    tokenizer = load_tokenizer(str(tok_dir))
    tok_settings = tokenizer_settings(tokenizer, max_length)
    data = None
    if check:
        if folder or has_local_data(task):  # a custom task's files, the bundled CoLA
            step("dev data")
            data = load_task_data(task, folder)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        step(f"copying {sel.name}/{sel.variant}")
        files, runtime = WRITERS[layout](tmp, Artifact(
            src, onnx_rec.get("sha256"), f"{sel.name}/{sel.variant}", sel.variant, tokenizer, tok_settings,
            session_settings(target, threads),
            {"name": task.name, "text_keys": list(task.text_keys), "labels": list(task.label_names),
             "main_metric": task.main_metric}))
        expected = expected_section(run, task, sel.name, sel.variant)
        latency = latency_section(run, target.name, sel.name, sel.variant, sel.row)
        if latency.get("emulated"):
            warnings.append(f"latency on {target.name} was measured as an emulation on another machine: only ratios "
                            "between depths/variants carry over to the device")
        head = latency.get("headline") or {}
        runs_with = runtime["session"]["intra_op_threads"] or physical_cores()
        if head and head["threads"] != runs_with:
            warnings.append(f"the latency was measured with {head['threads']} thread(s) but the runtime will use "
                            f"{runs_with} on this machine; pass --threads {head['threads']} to run as measured")
        if head.get("unstable"):
            warnings.append("the headline latency is flagged unstable (spread over the latency run's --max-cv)")
        manifest = stamp(FORMAT, VERSION, {
            "created": now(),
            "selection": {**sel.how, "model": sel.name, "variant": sel.variant, "variant_reason": sel.variant_reason,
                          "threads": threads, "threads_reason": threads_reason},
            "model": {"name": sel.name, "depth": rec.depth, "original_depth": run.cfg.original_depth,
                      "kept_layers": rec.kept_layers, "strategies": list(rec.strategies),
                      "variant": sel.variant, "provider": onnx_rec.get("provider"), "opset": onnx_rec.get("opset"),
                      "quantization_preset": onnx_rec.get("preset"), "base_model": run.cfg.model,
                      "source": {"run": str(run.path.resolve()), "file": onnx_rec["path"],
                                 "sha256": onnx_rec.get("sha256")}},
            "task": runtime["task"],
            "max_length": max_length,
            "target": target.to_dict(),
            "expected": expected,
            "latency": latency,
            "self_check": {"status": "skipped", "reason": "--no-check"},
            "warnings": warnings,
            "files": files,
        })
        atomic_write_json(tmp / MANIFEST, manifest)
        if check:
            step(f"checking the bundle with glp_runtime on the dev set ({task.name})")
            result = self_check(tmp, task, tokenizer, data, max_length, expected, runtime["session"]["providers"][0])
            manifest["self_check"] = result
            if result["status"] == "failed":
                raise DeployError(
                    f"the bundle does not reproduce {sel.name}/{sel.variant} through glp_runtime: dev "
                    f"{expected['main_key']} {result['dev_score']} vs {result['expected']} recorded at export, "
                    f"{result['tokenization']['mismatches']} tokenization mismatch(es); nothing was written. "
                    "Re-export the model ('glp-bench export --run DIR --force') and deploy again")
            atomic_write_json(tmp / MANIFEST, manifest)
        step(f"writing {out}")
        publish_permissions(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DeployResult(out, manifest, sel)
