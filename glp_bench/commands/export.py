"""glp-bench export: every fine-tuned depth of a run to ONNX, validated against PyTorch, with variants."""

from __future__ import annotations

import argparse


def add_export_args(p: argparse.ArgumentParser) -> None:
    """Export options shared with ``prune-and-export`` (which has its own --data-dir / --run)."""
    from ..export.stage import DEFAULT_OPSET
    from ..export.variants import DEFAULT_VARIANTS, PRESETS, VARIANTS

    p.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS),
        help="comma-separated ONNX variants (default %(default)s): "
        + "; ".join(f"{v.name} = {v.help}" for v in VARIANTS.values()),
    )
    p.add_argument("--opset", type=_opset, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    p.add_argument(
        "--quant-preset", default="auto", choices=["auto", *PRESETS],
        help="int8 preset for the target CPU (default auto: detected from this CPU's flags; "
        "set it when the deployment CPU differs from this one)",
    )
    from ..export.int8_select import CANDIDATES
    from ..export.quant_exclude import DEFAULT_MAX_QUANT_DROP
    from ._common import non_negative_float

    p.add_argument(
        "--int8-candidate", default="auto", choices=["auto", *CANDIDATES],
        help="int8 recipe (default auto: build the candidates that fit the preset, time them briefly with the "
        "latency harness on this CPU and keep the fastest; name one to skip the timing, e.g. when this CPU is "
        "not the deployment CPU): " + "; ".join(f"{c.name} = {c.help}" for c in CANDIDATES.values()),
    )
    p.add_argument(
        "--max-quant-drop", type=non_negative_float, default=DEFAULT_MAX_QUANT_DROP,
        help="points (score x 100) int8 may lose vs fp32 through ONNX Runtime, judged on the 15%% of train the "
        "search held out, never dev (default %(default)s); beyond it the most sensitive nodes (measured on train "
        "calibration inputs) stay fp32 until within budget",
    )


def _opset(text: str) -> int:
    """argparse type: an opset this onnx supports, refused when the options are parsed (before a prune)."""
    from ..core.errors import ExportError
    from ..export.stage import check_opset

    try:
        return check_opset(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    except ExportError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--opset {text} ")) from None


def export_kwargs(args) -> dict:
    """The keyword arguments of ``glp_bench.export.stage.export_run`` from parsed ``add_export_args`` options."""
    return {"variants": args.variants, "opset": args.opset, "quant_preset": args.quant_preset,
            "int8_candidate": args.int8_candidate, "max_quant_drop": args.max_quant_drop}


def add_parser(sub):
    p = sub.add_parser(
        "export", help="export every fine-tuned depth of a run to ONNX, validated, with int8/fp16 variants",
        description="Export every fine-tuned depth of a run directory to depth-NN/onnx/model.onnx with optimum "
        "(text-classification, dynamic batch and sequence axes) and build the requested variants beside it. "
        "Every file is run with ONNX Runtime on real dev inputs and compared with PyTorch (fp32 graphs must agree "
        "within 1e-4), then scored on the full dev split; results go to the manifest and depth-NN/onnx/export.json. "
        "Exits non-zero when any depth fails; the depths that passed are kept. Re-running skips what is up to date.",
    )
    p.add_argument("--run", "--run-dir", dest="run_dir", required=True, help="run directory (from 'glp-bench prune')")
    p.add_argument("--data-dir", default=None,
                   help="the task's GLUE folder (default: the one the run was pruned with)")
    add_export_args(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="re-export and rebuild everything, even what is up to date")
    mode.add_argument("--revalidate", action="store_true",
                      help="do not export: re-validate and re-score the ONNX files on disk (catches corrupt or edited files)")
    return p


def render(report, console) -> None:
    """The per-model, per-variant table: status, logit difference, ORT vs PyTorch dev score, size."""
    from rich.table import Table

    from ..core.rundir import RunDir

    run = RunDir(report.run_dir).load()
    key = report.main_key
    table = Table(title=f"ONNX export: {report.run_dir}")
    for col, just in (("model", "left"), ("variant", "left"), ("status", "left"), ("max |Δlogit|", "right"),
                      ("tolerance", "right"), (f"dev {key} (ORT)", "right"), (f"dev {key} (PyTorch)", "right"),
                      ("size MB", "right"), ("build s", "right")):
        table.add_column(col, justify=just)
    for name, recs in report.records.items():
        torch_score = run.model(name).score(key)
        for variant, r in recs.items():
            val = r.get("validation") or {}
            score = (r.get("dev_scores") or {}).get(key)
            status = r.get("status", "?")
            if variant in report.skipped.get(name, []):
                status += " (kept)"
            table.add_row(
                name, variant, f"[green]{status}[/]" if status.startswith("ok") else f"[red]{status}[/]",
                _fmt(val.get("max_abs_diff"), ".2e"), _fmt(val.get("tolerance"), "g", "-"),
                _fmt(score, ".4f"), _fmt(torch_score, ".4f"),
                _fmt(r["size"] / 1e6 if "size" in r else None, ".1f"),
                _fmt((r.get("seconds") or {}).get("build"), ".1f"),
            )
    console.print(table)
    from ..export.int8 import int8_notes

    built = {n for n, recs in report.records.items() if "int8" in recs and "int8" not in report.skipped.get(n, [])}
    for note in int8_notes(run.models, built):
        console.print(note, markup=False)
    for name, variant, err in report.failures:
        console.print(f"[red]{name} {variant}[/]: {err}")


def _fmt(x, spec: str, missing: str = "") -> str:
    return missing if x is None else format(x, spec)


def run(args) -> int:
    from rich.console import Console

    from ..core.openrun import open_run
    from ..core.progress import make_progress
    from ..export.stage import export_run
    from ._common import quiet_hf

    quiet_hf()
    with open_run(args.run_dir) as opened:  # export writes the manifest: one writer at a time
        with make_progress(transient=True) as progress:
            report = export_run(opened.run.path, data_dir=args.data_dir, force=args.force, revalidate=args.revalidate,
                                progress=progress, **export_kwargs(args))
        render(report, Console())
    report.raise_for_failures()
    return 0
