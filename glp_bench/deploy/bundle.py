"""Deployment bundles: one pruned model of a run, in the ONNX variant a target runs, with everything
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

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DeployError
from ..core.jsonio import atomic_write_json, sha256_file, stamp
from ..core.machine import physical_cores
from ..core.rundir import RunDir, now

FORMAT = "glp-bench-bundle"  # == glp_runtime.bundle.FORMAT (tests keep them equal)
VERSION = 1
MANIFEST, RUNTIME, MODEL, TOKENIZER = "bundle.json", "runtime.json", "model.onnx", "tokenizer.json"
BATCH_SIZE = 64  # the runtime's batch: the one export scored the dev set with (glp_bench.export.validate.predict_onnx)
# Variants in the order they are expected to be fast on a device, when nothing was measured.
SPEED_ORDER = {"cpu": ("int8", "fp32-opt", "fp32"), "cuda": ("fp16", "fp32-opt", "fp32")}
SCORE_TOLERANCE = 1e-6  # the runtime must reproduce the recorded dev score (same model, same batches)


# --- what to deploy (pure) ----------------------------------------------------------------------


def choose_variant(target, exported: list[str], measured: dict[str, float] | None = None,
                   override: str | None = None, model: str = "the model") -> tuple[str, str]:
    """(variant, reason): THE rule for which ONNX variant a target gets (see the module docstring).

    ``exported``: the model's variants with status ok; ``measured``: {variant: latency in seconds} on
    the target (balanced median at the report's batch/seq/threads), for the measured ones."""
    if override:
        if override not in exported:
            raise DeployError(f"{model} has no {override} export with status ok (it has: {', '.join(exported) or 'none'}); "
                              f"build it with 'glp-bench export --run DIR --variants {override}' or pick another --variant")
        return override, "chosen with --variant"
    usable = [v for v in target.variants if v in exported]
    if not usable:
        raise DeployError(
            f"{model} has no exported variant that target {target.name} runs (it lists {', '.join(target.variants)}; "
            f"exported ok: {', '.join(exported) or 'none'}); build one with 'glp-bench export --run DIR --variants "
            f"{target.variants[0]}', or pass --variant")
    timed = {v: t for v, t in (measured or {}).items() if v in usable and t is not None}
    if timed:
        best = min(timed, key=lambda v: (timed[v], SPEED_ORDER[target.device].index(v)
                                         if v in SPEED_ORDER[target.device] else 9))
        return best, f"fastest measured on {target.name} among {', '.join(sorted(timed))}"
    order = [v for v in SPEED_ORDER[target.device] if v in usable] + [v for v in usable if v not in SPEED_ORDER[target.device]]
    return order[0], (f"not measured on {target.name}: the variant expected fastest on {target.device} "
                      f"({' > '.join(SPEED_ORDER[target.device])}) among those exported")


def choose_threads(target, measurements: list[dict], model: str, variant: str,
                   override: int | None = None) -> tuple[int, str]:
    """(intra-op threads, reason): ``override``; else the thread count with the lowest balanced median among
    the target's measurements of ``model``/``variant`` at the smallest measured batch (ties: fewer threads;
    several sequence lengths: the one measured with most thread counts, then the longest); else the
    target's default (see :func:`session_settings`)."""
    if override is not None:
        return override, "chosen with --threads"
    mine = [m for m in measurements if m.get("model") == model and m.get("variant") == variant and m.get("summary_s")]
    if mine:
        batch = min(m["batch"] for m in mine)
        at_batch = [m for m in mine if m["batch"] == batch]
        seqs = {m["seq"] for m in at_batch}
        seq = max(seqs, key=lambda s: (len({m["threads"] for m in at_batch if m["seq"] == s}), s))
        timed = {m["threads"]: m["summary_s"].get("balanced_median", m["summary_s"]["p50"])
                 for m in at_batch if m["seq"] == seq}
        best = min(timed, key=lambda t: (timed[t], t))
        others = ", ".join(f"{t}: {timed[t] * 1e3:.2f} ms" for t in sorted(timed) if t != best)
        return best, (f"fastest measured on {target.name} for {model}/{variant} (batch {batch}, seq {seq}: "
                      f"{timed[best] * 1e3:.2f} ms" + (f"; {others}" if others else "; the only thread count measured")
                      + ")")
    default = session_settings(target)["intra_op_threads"]
    return default, (f"not measured on {target.name} for {model}/{variant}: the target's default "
                     f"({default or 'ONNX Runtime default'}); run 'glp-bench latency' first to choose by measurement")


def session_settings(target, threads: int | None = None) -> dict:
    """ONNX Runtime session settings of the target, for runtime.json. Threads: ``threads``, else the target's
    last setting ("physical"/"logical" -> 0, ONNX Runtime's own default of one thread per physical core)."""
    last = target.threads[-1]
    intra = threads if threads is not None else (last if isinstance(last, int) else 0)
    providers = [target.provider]
    return {"providers": providers, "intra_op_threads": int(intra), "inter_op_threads": target.inter_op_threads,
            "spinning": target.spinning, "memory_arena": target.memory_arena,
            "graph_optimization": target.graph_optimization}


def tokenizer_settings(tokenizer, max_length: int) -> dict:
    """How the model's inputs were tokenized (transformers' ``truncation=True, max_length``), for the
    runtime's ``tokenizers`` configuration."""
    if not getattr(tokenizer, "is_fast", False):
        raise DeployError(f"the model's tokenizer ({type(tokenizer).__name__}) has no fast version; the runtime "
                          "needs a tokenizer.json (save the model with a fast tokenizer)")
    if tokenizer.pad_token_id is None:
        raise DeployError("the model's tokenizer has no pad token; the runtime cannot batch inputs")
    return {"file": TOKENIZER, "max_length": int(max_length), "truncation_strategy": "longest_first",
            "truncation_side": tokenizer.truncation_side, "padding_side": tokenizer.padding_side,
            "pad_id": int(tokenizer.pad_token_id), "pad_token": str(tokenizer.pad_token),
            "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0)}


# --- selection ------------------------------------------------------------------------------------


@dataclass
class Selection:
    name: str
    variant: str
    variant_reason: str
    how: dict  # {"by": "depth"|"max-drop", ...}
    row: object | None = None  # glp_bench.report.stage.Row on the target, when measured
    warnings: list[str] = field(default_factory=list)


def _rows(run: RunDir, target_name: str) -> list:
    from ..report.stage import collect_rows

    if target_name not in run.latency_targets():
        return []
    return collect_rows(run, [target_name])


def select(run: RunDir, target, depth: int | None = None, max_drop: float | None = None,
           strategy: str | None = None, variant: str | None = None) -> Selection:
    """The model and variant to deploy on ``target`` (DeployError naming the fix when there is none)."""
    from ..report.stage import recommend

    finished = run.finished_models()
    if not finished:
        raise DeployError(f"{run.path} has no fine-tuned model; run 'glp-bench prune-and-export' first")
    if (depth is None) == (max_drop is None):
        raise DeployError("pass exactly one of --depth N (deploy that depth) or --max-drop X (the depth the report "
                          "recommends within X GLUE points of the full model)")
    rows = _rows(run, target.name)
    if max_drop is not None:
        if max_drop < 0:
            raise DeployError(f"--max-drop must be >= 0 GLUE points, got {max_drop:g}")
        if not rows:
            raise DeployError(
                f"--max-drop picks the fastest model measured on {target.name}, but {run.path} has no "
                f"latency/{target.name}.json; run 'glp-bench latency --run {run.path} --device {target.name}' first, "
                "or choose a depth with --depth N")
        pool = [r for r in rows if r.deployable and (variant is None or r.variant == variant)
                and (strategy is None or strategy in r.strategies)]
        best = recommend(pool, max_drop)
        if best is None:
            measured = [r for r in pool if r.latency_s is not None and r.delta() is not None]
            closest = max(measured, key=lambda r: r.delta(), default=None)
            raise DeployError(
                f"no model measured on {target.name} is within {max_drop:g} GLUE points of the full model"
                + (f" (closest: {closest.label}, {closest.delta():+.2f} points)" if closest else "")
                + "; allow a larger --max-drop or choose a depth with --depth N")
        return Selection(best.name, best.variant, f"recommended by the report: fastest on {target.name} within "
                         f"{max_drop:g} GLUE points ({best.delta():+.2f})",
                         {"by": "max-drop", "max_drop_points": max_drop, "depth": best.depth}, best, list(best.notes))
    names = run.models_at_depth(depth, strategy)
    if not names:
        depths = sorted({m["depth"] for m in finished.values()}, reverse=True)
        raise DeployError(f"{run.path} has no fine-tuned model of depth {depth}"
                          + (f" for strategy {strategy}" if strategy else "")
                          + f"; depths available: {', '.join(map(str, depths))}")
    name = names[0]
    rec = finished[name]
    measured = {r.variant: r.latency_s for r in rows if r.name == name and r.deployable}
    chosen, reason = choose_variant(target, run.ok_variants(name), measured, variant, name)
    row = next((r for r in rows if r.name == name and r.variant == chosen), None)
    how = {"by": "depth", "depth": depth, "strategy": strategy or (rec.get("strategies") or [None])[0]}
    return Selection(name, chosen, reason, how, row, list(row.notes) if row else [])


def _measurements(run: RunDir, target_name: str) -> list[dict]:
    from ..bench import results

    path = run.latency_path(target_name)
    return results.load(path).get("measurements", []) if path.is_file() else []


def _row_at(run: RunDir, target_name: str, name: str, variant: str, threads: int):
    """The report's row of ``name``/``variant`` at ``threads`` (the headline of the bundle's latency)."""
    from ..report.stage import collect_rows

    rows = collect_rows(run, [target_name], threads=threads)
    return next((r for r in rows if r.name == name and r.variant == variant), None)


# --- manifest sections ----------------------------------------------------------------------------


def expected_section(run: RunDir, task, name: str, variant: str) -> dict:
    rec = run.models[name]
    onnx = rec["onnx"][variant]
    key = task.main_dev_key
    _, ref_name = run.reference()
    ref = (run.models.get(ref_name) or {}).get("dev_scores") or {} if ref_name else {}
    score = (onnx.get("dev_scores") or {}).get(key)
    ref_score = ref.get(key)
    return {"main_key": key, "dev_score": score, "dev_scores": onnx.get("dev_scores"),
            "pytorch_dev_scores": rec.get("dev_scores"), "dev_splits": list(task.dev_splits),
            "reference": {"model": ref_name, "variant": "torch-eager", "dev_score": ref_score},
            "delta_points": None if score is None or ref_score is None else (score - ref_score) * 100.0}


def latency_section(run: RunDir, target_name: str, name: str, variant: str, row) -> dict:
    from ..bench import results

    path = run.latency_path(target_name)
    if not path.is_file():
        return {"status": "not measured", "reason": f"no latency/{target_name}.json in the run; run 'glp-bench "
                f"latency --run {run.path} --device {target_name}' before deploying to record it"}
    doc = results.load(path)
    mine = [m for m in doc.get("measurements", []) if m.get("model") == name and m.get("variant") == variant
            and m.get("summary_s")]
    if row is None or row.latency_s is None or not mine:
        return {"status": "not measured", "reason": f"latency/{target_name}.json has no measurement of {name}/{variant}"}
    ms = 1000.0

    def config(m: dict) -> dict:
        s = m["summary_s"]
        return {"batch": m["batch"], "seq": m["seq"], "threads": m["threads"], "p50_ms": s["p50"] * ms,
                "p90_ms": s["p90"] * ms, "latency_ms": s.get("balanced_median", s["p50"]) * ms,
                "speedup_vs_full_fp32": (m.get("speedup") or {}).get("vs_full_fp32"),
                "sequences_per_s": (m.get("throughput") or {}).get("sequences_per_s"), "unstable": m.get("unstable")}

    target = doc.get("target") or {}
    env = doc.get("environment") or {}
    return {
        "status": "measured", "source": f"latency/{target_name}.json", "target": target_name,
        "complete": doc.get("complete", True), "emulated": target.get("emulated"),
        "notes": target.get("notes") or [],
        "machine": {k: env.get(k) for k in ("cpu_model", "physical_cores", "machine") if k in env},
        "headline": {"batch": row.batch, "seq": row.seq, "threads": row.threads, "p50_ms": row.p50_s * ms,
                     "p90_ms": row.p90_s * ms, "latency_ms": row.latency_s * ms,
                     "speedup_vs_full_fp32": row.speedup, "sequences_per_s": row.sequences_per_s,
                     "unstable": row.unstable},
        "configurations": [config(m) for m in sorted(mine, key=lambda m: (m["threads"], m["batch"], m["seq"]))],
    }


def graph_io(path: Path) -> tuple[list[str], str]:
    """(input names, first output name) of an ONNX file; refuses external-data models."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise DeployError(f"{path} keeps its weights in external data files (a model over 2 GB); bundles hold one "
                          "self-contained model.onnx")
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits], model.graph.output[0].name


# --- the runtime (for the self-check) -------------------------------------------------------------


def long_text(texts: list[str], min_words: int) -> str:
    """A text of at least ``min_words`` words made of real ones (exercises truncation)."""
    words = " ".join(texts).split() or ["text"]
    return " ".join((words * (min_words // len(words) + 1))[:min_words])


def self_check(bundle_dir: Path, task, tokenizer, data, max_length: int, expected: dict, provider: str) -> dict:
    """Load ``bundle_dir`` with glp_runtime (checksums verified), compare its tokenization with
    transformers' (ids and token types, on dev texts and one text far over the max length), classify
    the dev split(s) and score them against the expected dev scores.

    When the target's provider (CUDA) is missing here, the model runs on the CPU as a stand-in: the
    tokenization must still match, the score is recorded but not held to the tolerance."""
    import glp_runtime as rt  # installed with glp-bench (deploy/runtime)

    from ..data.tasks import flatten_scores
    from ..export.validate import CPU, available_providers
    stand_in = provider not in available_providers()
    try:
        clf = rt.Classifier.load(bundle_dir, provider=CPU if stand_in else None)
    except rt.BundleError as e:
        if stand_in:
            return {"status": "skipped", "reason": f"{provider} is not available here and the model does not load "
                    f"on the CPU ({e}); check the bundle on the target with 'glp-runtime verify'"}
        raise DeployError(f"the new bundle does not load in glp_runtime: {e}") from None
    if data is None:
        return {"status": "skipped", "reason": "no dev data (pass --data-dir)"}
    per_split, served_split, examples, mismatches, checked = {}, {}, 0, 0, 0
    invariant = getattr(clf, "batch_invariant", True)
    for split in task.dev_splits:
        ds = data[split]
        items = list(zip(*(ds[k] for k in task.text_keys), strict=True))
        try:
            # as the export scored it (glp_bench.export.validate.scoring_batch_size): batches of BATCH_SIZE, or one
            # input at a time for a variant that is not batch-invariant (int8), which is also how it is served
            logits = clf.logits(items, batch_size=BATCH_SIZE if invariant else 1)
            served = logits
        except rt.InputError as e:
            return {"status": "skipped", "reason": f"the {split} split has an input the runtime refuses ({e})"}
        per_split[split] = task.compute(logits, ds["label"])
        served_split[split] = task.compute(served, ds["label"])
        examples += len(items)
        sample = items[:256] + [tuple(long_text(list(t), 4 * max_length) for t in items[0])]
        ours = clf.tokenizer.encode_batch([t[0] if len(t) == 1 else t for t in sample])
        theirs = tokenizer(*[list(col) for col in zip(*sample, strict=True)], truncation=True, max_length=max_length)
        for i, enc in enumerate(ours):
            checked += 1
            types = theirs.get("token_type_ids")
            if enc.ids != theirs["input_ids"][i] or (types is not None and enc.type_ids != types[i]):
                mismatches += 1
    scores = flatten_scores(task, per_split)
    want, got = expected.get("dev_score"), scores.get(expected["main_key"])
    diff = None if want is None or got is None else abs(got - want)
    ok = mismatches == 0 and (stand_in or (diff is not None and diff <= SCORE_TOLERANCE))
    result = {"status": "ok" if ok else "failed", "provider": clf.provider, "examples": examples,
              "tokenization": {"checked": checked, "mismatches": mismatches, "truncation_tested": True},
              "dev_scores": scores, "dev_score": got, "expected": want, "difference": diff,
              "tolerance": None if stand_in else SCORE_TOLERANCE, "batch_invariant": invariant}
    if not invariant:
        result["served_dev_score"] = flatten_scores(task, served_split).get(expected["main_key"])
    if stand_in:
        result["note"] = (f"{provider} is not available here: the model ran on the CPU as a stand-in, so the score "
                          "is not held to the tolerance")
    return result


# --- writing --------------------------------------------------------------------------------------


@dataclass
class DeployResult:
    out: Path
    manifest: dict
    selection: Selection


def _copy_checked(src: Path, dst: Path, sha256: str | None, what: str) -> dict:
    if not src.is_file():
        raise DeployError(f"{src} is missing; re-run 'glp-bench export' for the run")
    if sha256 and sha256_file(src) != sha256:
        raise DeployError(f"{src} differs from the sha256 the run manifest recorded for {what} (edited or "
                          "corrupt); re-export it with 'glp-bench export --run DIR --force'")
    shutil.copyfile(src, dst)
    digest = sha256_file(dst)
    if sha256 and digest != sha256:
        raise DeployError(f"copying {src} to {dst} gave a different file; check the disk and retry")
    return {"size": dst.stat().st_size, "sha256": digest}


def publish_permissions(folder: Path) -> None:
    """Temp files are private (0600/0700); a bundle gets the usual 0644/0755, minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o755 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o644 & ~umask)


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``; an existing bundle there is replaced."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def clean_stale(out: Path) -> list[Path]:
    """Remove what a killed deploy to ``out`` left (``.NAME.tmp-*``; ``.NAME.old-*`` is moved back when
    ``out`` itself is gone). Call only while holding ``out``'s lock: then no other deploy owns them."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for p in sorted(out.parent.glob(f".{glob.escape(out.name)}.old-*")):
        if not out.exists():
            os.rename(p, out)  # killed between the two renames of replace_dir: the old bundle comes back
        else:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for p in sorted(out.parent.glob(f".{glob.escape(out.name)}.tmp-*")):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def check_out(out: Path, force: bool) -> None:
    if out.exists() or out.is_symlink():
        if not force:
            raise DeployError(f"{out} already exists; pass --force to replace it, or choose another --out")
        if not out.is_dir() or not (out / MANIFEST).is_file():
            raise DeployError(f"{out} exists and is not a bundle; refusing to replace it: choose another --out")


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
            step=None) -> DeployResult:
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
    folder = data_dir or run.config.get("data_dir") or os.environ.get("GLP_BENCH_DATA")
    if check:  # the self-check scores the dev set: it must be the one the run was scored on
        from ..data.identity import check_data_unchanged

        check_data_unchanged(run, task, folder, "deploy")
    sel = select(run, target, depth, max_drop, strategy, variant)
    rec = run.models[sel.name]
    onnx_rec = rec["onnx"][sel.variant]
    src = run.file(onnx_rec["path"])
    max_length = int(run.config.get("max_length", 128))
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
        files = {MODEL: _copy_checked(src, tmp / MODEL, onnx_rec.get("sha256"), f"{sel.name}/{sel.variant}")}
        inputs, output = graph_io(tmp / MODEL)
        tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER))
        files[TOKENIZER] = {"size": (tmp / TOKENIZER).stat().st_size, "sha256": sha256_file(tmp / TOKENIZER)}
        runtime = {
            "task": {"name": task.name, "text_keys": list(task.text_keys), "labels": list(task.label_names),
                     "main_metric": task.main_metric},
            "model": {"file": MODEL, "variant": sel.variant, "inputs": inputs, "output": output},
            "tokenizer": tok_settings,
            "session": session_settings(target, threads),
            "batch_size": BATCH_SIZE,
        }
        atomic_write_json(tmp / RUNTIME, runtime)
        files[RUNTIME] = {"size": (tmp / RUNTIME).stat().st_size, "sha256": sha256_file(tmp / RUNTIME)}
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
            "model": {"name": sel.name, "depth": rec["depth"], "original_depth": run.config.get("original_depth"),
                      "kept_layers": rec.get("kept_layers"), "strategies": rec.get("strategies"),
                      "variant": sel.variant, "provider": onnx_rec.get("provider"), "opset": onnx_rec.get("opset"),
                      "quantization_preset": onnx_rec.get("preset"), "base_model": run.config.get("model"),
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
