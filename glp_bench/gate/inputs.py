"""What the gate compares: ONNX files resolved from what a user passes, and stored baselines.

A side of a same-job comparison may be given as

* an ``.onnx`` file;
* an export folder (``depth-06/onnx``, or any folder optimum exported into) holding the variant's file
  (``model.onnx`` for fp32, ``model.int8.onnx`` for int8, ...), or a depth folder with ``onnx/`` inside;
* a run directory (``manifest.json``): ``--model`` (default: the full-depth model) and ``--variant``
  (default fp32) pick the file from the manifest's export records.

A stored baseline is a ``latency/<target>.json`` file written by ``glp-bench latency``; one of its
measurements is the baseline (``--key``, or filters with defaults: the run's full-depth reference model,
variant fp32, batch 1 / seq 128 / 1 thread when several remain).
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import GateInputError, RunDirError
from ..core.rundir import RunDir
from ..export.variants import VARIANTS

FILENAME_TO_VARIANT = {v.filename: name for name, v in VARIANTS.items()}
DEFAULT_VARIANT = "fp32"


def variant_of(path: Path) -> str | None:
    return FILENAME_TO_VARIANT.get(path.name)


def _check_variant(variant: str | None) -> str:
    variant = variant or DEFAULT_VARIANT
    if variant not in VARIANTS:
        raise GateInputError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return variant


def _from_run(path: Path, model: str | None, variant: str | None) -> tuple[Path, dict]:
    run = RunDir(path).load()
    exported = run.exported()
    if not exported:
        raise GateInputError(f"{path} has no exported ONNX models; run 'glp-bench export --run {path}' first")
    if model is None:
        model = run.reference(list(exported))[1]
    elif model not in exported:
        raise GateInputError(f"{path} has no exported model {model!r}; exported: {', '.join(sorted(exported))}")
    variant = _check_variant(variant)
    rec = exported[model]["onnx"].get(variant)
    if not rec:
        raise GateInputError(f"{path}: {model} has no {variant} export (has {', '.join(exported[model]['onnx'])}); "
                             f"pick another --variant or run 'glp-bench export --variants {variant}'")
    if rec.get("status") != "ok":
        raise GateInputError(f"{path}: {model}/{variant} export status is {rec.get('status')!r}"
                             + (f" ({rec['error']})" if rec.get("error") else "") + "; re-run 'glp-bench export'")
    onnx = run.file(rec["path"])
    if not onnx.is_file():
        raise GateInputError(f"{onnx} is missing (recorded in {path}/manifest.json); re-run 'glp-bench export'")
    return onnx, {"kind": "run", "model": model, "variant": variant}


def resolve_model(spec: str, model: str | None = None, variant: str | None = None) -> tuple[Path, dict]:
    """(ONNX file, description) for one side of the comparison; GateInputError when it cannot be found."""
    path = Path(spec)
    if path.is_file():
        if path.suffix != ".onnx":
            raise GateInputError(f"{path} is not an .onnx file; pass an ONNX model, an export folder or a run directory "
                                 "(a latency .json is a stored baseline: pass it as --baseline)")
        named = variant_of(path)
        if variant is not None:  # never ignored: a typo or a contradiction is refused
            _check_variant(variant)
            if named is not None and named != variant:
                raise GateInputError(f"--variant {variant} but {path} is the {named} file; --variant picks the file "
                                     f"in export folders and run directories: leave it out or pass the {variant} file")
        return path, {"kind": "file", "model": None, "variant": variant or named}
    if not path.is_dir():
        raise GateInputError(f"{path} does not exist; pass an ONNX model, an export folder or a run directory")
    if RunDir.is_run(path):
        onnx, info = _from_run(path, model, variant)
        return onnx, info
    variant = _check_variant(variant)
    filename = VARIANTS[variant].filename
    for folder in (path, path / "onnx"):
        if (folder / filename).is_file():
            return folder / filename, {"kind": "folder", "model": None, "variant": variant}
    found = sorted(p.name for p in path.glob("*.onnx")) + sorted(f"onnx/{p.name}" for p in path.glob("onnx/*.onnx"))
    raise GateInputError(f"{path} has no {filename} (variant {variant})"
                         + (f"; it has {', '.join(found)}: pick one with --variant or pass the file" if found
                            else "; pass an ONNX model, an export folder or a run directory"))


# --- stored baselines -----------------------------------------------------------------------------


def load_stored(path: str | Path) -> dict:
    """A ``glp-bench latency`` results file (RunDirError, exit 2, for anything else)."""
    from ..bench import results

    try:
        return results.load(path)
    except RunDirError as e:
        raise GateInputError(f"stored baseline: {e} (pass a latency/<target>.json written by 'glp-bench latency')") from None


def select_record(doc: dict, *, key: str | None = None, model: str | None = None, variant: str | None = None,
                  batch: int | None = None, seq: int | None = None, threads: int | None = None) -> dict:
    """The measurement of ``doc`` to use as the baseline (see the module docstring)."""
    usable = [m for m in doc.get("measurements", []) if m.get("summary_s") and m.get("samples_s")]
    keys = [m["key"] for m in usable]
    if not usable:
        raise GateInputError("the stored baseline has no successful measurement; re-run 'glp-bench latency'")
    if key is not None:
        for m in usable:
            if m["key"] == key:
                return m
        raise GateInputError(f"the stored baseline has no measurement {key!r}; it has {', '.join(keys[:12])}"
                             + (" ..." if len(keys) > 12 else ""))
    ref_model = (doc.get("reference") or {}).get("onnx")
    model = model or (ref_model.split("/")[0] if ref_model else None)
    variant = _check_variant(variant)
    chosen = [m for m in usable if (model is None or m["model"] == model) and m["variant"] == variant
              and (batch is None or m["batch"] == batch) and (seq is None or m["seq"] == seq)
              and (threads is None or m["threads"] == threads)]
    if len(chosen) > 1:
        preferred = [m for m in chosen if (m["batch"], m["seq"], m["threads"]) == (batch or 1, seq or 128, threads or 1)]
        chosen = preferred or chosen
    if len(chosen) == 1:
        return chosen[0]
    what = f"model {model}, variant {variant}" + "".join(
        f", {n} {v}" for n, v in (("batch", batch), ("seq", seq), ("threads", threads)) if v is not None)
    if not chosen:
        raise GateInputError(f"the stored baseline has no measurement for {what}; it has {', '.join(keys[:12])}"
                             + (" ..." if len(keys) > 12 else "") + "; choose one with --key")
    raise GateInputError(f"{len(chosen)} stored measurements match {what} ({', '.join(m['key'] for m in chosen)}); "
                         "choose one with --key, or narrow with --batch/--seq/--threads")


def stored_model_path(doc: dict, json_path: str | Path, record: dict) -> Path | None:
    """The baseline's ONNX file when it is still on disk unchanged (same size and sha256), else None."""
    from ..core.jsonio import sha256_file

    rel = record.get("path")
    if not rel:
        return None
    json_path = Path(json_path)
    roots = [json_path.resolve().parent.parent]
    if (doc.get("run") or {}).get("path"):
        roots.append(Path(doc["run"]["path"]))
    for root in roots:
        p = root / rel
        if p.is_file() and (record.get("file_size") in (None, p.stat().st_size)) and (
                record.get("sha256") in (None, sha256_file(p))):
            return p
    return None
