"""The bundle layout glp_runtime reads, and the writer seam beside it.

A *writer* turns the selected artifact into files in a temporary folder and returns their records; the deploy
stage (``glp_bench.deploy.bundle``) chooses, writes the manifest, self-checks and renames the folder into place
whatever the writer. ``WRITERS`` holds the layouts; the one shipped is ``glp-runtime`` (``write_glp_runtime``:
``model.onnx``, ``tokenizer.json``, ``runtime.json``). A second layout (a Triton model repository, a Ray Serve
application) is one more function with the same signature, registered here; selection does not change.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DeployError
from ..core.jsonio import atomic_write_json, sha256_file
from ..core.rundir import RunDir

FORMAT = "glp-bench-bundle"  # == glp_runtime.bundle.FORMAT (tests keep them equal)
VERSION = 1
MANIFEST, RUNTIME, MODEL, TOKENIZER = "bundle.json", "runtime.json", "model.onnx", "tokenizer.json"
BATCH_SIZE = 64  # the runtime's batch: the one export scored the dev set with (glp_bench.export.validate.predict_onnx)


@dataclass
class Artifact:
    """What a writer gets: the chosen ONNX file (checked against ``sha256``), its tokenizer and settings."""

    src: Path
    sha256: str | None
    what: str  # "<model>/<variant>", for messages
    variant: str
    tokenizer: object
    tok_settings: dict
    session: dict
    task: dict


Writer = Callable[[Path, Artifact], tuple[dict, dict]]  # (tmp folder, artifact) -> (files, runtime config)


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



def expected_section(run: RunDir, task, name: str, variant: str) -> dict:
    rec = run.model(name)
    onnx = rec.onnx[variant]
    key = task.main_dev_key
    _, ref_name = run.reference()
    ref = run.model(ref_name)
    score = (onnx.dev_scores or {}).get(key)
    ref_score = ref.score(key) if ref else None
    return {"main_key": key, "dev_score": score, "dev_scores": onnx.dev_scores,
            "pytorch_dev_scores": rec.dev_scores, "dev_splits": list(task.dev_splits),
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




def write_glp_runtime(tmp: Path, art: Artifact) -> tuple[dict, dict]:
    """glp_runtime's layout: the model, the fast tokenizer and ``runtime.json``; returns their file records and
    the runtime config."""
    files = {MODEL: _copy_checked(art.src, tmp / MODEL, art.sha256, art.what)}
    inputs, output = graph_io(tmp / MODEL)
    art.tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER))
    files[TOKENIZER] = {"size": (tmp / TOKENIZER).stat().st_size, "sha256": sha256_file(tmp / TOKENIZER)}
    runtime = {"task": art.task, "model": {"file": MODEL, "variant": art.variant, "inputs": inputs, "output": output},
               "tokenizer": art.tok_settings, "session": art.session, "batch_size": BATCH_SIZE}
    atomic_write_json(tmp / RUNTIME, runtime)
    files[RUNTIME] = {"size": (tmp / RUNTIME).stat().st_size, "sha256": sha256_file(tmp / RUNTIME)}
    return files, runtime


WRITERS: dict[str, Writer] = {"glp-runtime": write_glp_runtime}
