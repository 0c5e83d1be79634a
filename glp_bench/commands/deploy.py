"""glp-bench deploy: write a self-contained bundle of one pruned model for a target (see glp_bench.deploy.bundle)."""

from __future__ import annotations

from ._common import non_negative_float, non_negative_int, positive_int


def add_parser(sub):
    p = sub.add_parser(
        "deploy", help="write a self-contained bundle (ONNX model, tokenizer, labels, manifest) for a target",
        description="Write the model of a chosen depth, in the ONNX variant the target runs, as a bundle that "
        "deploy/runtime (glp_runtime: onnxruntime + tokenizers + numpy, no torch) serves: model.onnx, tokenizer.json, "
        "runtime.json (labels, max length, tokenizer and session settings) and bundle.json (expected dev score, "
        "latency measured on the target, sha256 of every file). The bundle is checked with the runtime on the dev "
        "set before it is moved into place.",
    )
    p.add_argument("--run", "--run-dir", dest="run_dir", required=True, help="run directory (exported, see 'glp-bench export')")
    p.add_argument("--target", required=True,
                   help="target name (cpu, cuda, embedded-arm64, or NAME.toml in ./deploy/targets / $GLP_BENCH_TARGETS) "
                   "or a path to a target .toml, as for 'glp-bench latency --device'")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--depth", type=positive_int, help="deploy the model of this depth")
    which.add_argument("--max-drop", type=non_negative_float, metavar="POINTS",
                       help="deploy what the report recommends: the fastest model and variant measured on the target "
                       "whose main dev score is within POINTS GLUE points (metric x 100) of the full model")
    p.add_argument("--out", required=True, help="bundle folder to write (must not exist, unless --force)")
    p.add_argument("--strategy", default=None,
                   help="with several strategies at one depth, the one whose model to deploy (default: the run's first)")
    p.add_argument("--variant", default=None,
                   help="ONNX variant to deploy (fp32, fp32-opt, int8, fp16); default: the target's rule "
                   "(fastest measured on the target among its variants, else int8 on CPU / fp16 on CUDA)")
    p.add_argument("--threads", type=non_negative_int, default=None,
                   help="intra-op threads the runtime uses (default: the thread count the target's latency results "
                   "measured fastest for the deployed model, else the target's last setting; 0 = ORT default)")
    p.add_argument("--data-dir", default=None, help="the task's GLUE folder for the check (default: the run's)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the check that the runtime reproduces the expected dev score (faster on big dev sets)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    return p


def run(args) -> int:
    from ..core.outputs import check_output
    from ..core.preflight import writable_dir
    from ..core.progress import console, make_progress
    from ..deploy.bundle import deploy

    writable_dir(args.out, "--out")  # before the export check, not after it
    check_output(args.out, "--out", folder=True, example="bundles/my-model")
    with make_progress(transient=True) as progress:
        task_id = progress.add_task("deploy", total=None)

        def step(msg: str) -> None:
            progress.update(task_id, description=msg)

        result = deploy(args.run_dir, args.target, args.out, depth=args.depth, max_drop=args.max_drop,
                        strategy=args.strategy, variant=args.variant, threads=args.threads,
                        check=not args.no_check, force=args.force, data_dir=args.data_dir, step=step)
    render(result, console)
    return 0


def _fmt(v, spec: str, none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def render(result, console) -> None:
    from rich.table import Table

    m = result.manifest
    model, exp, lat, chk = m["model"], m["expected"], m["latency"], m["self_check"]
    table = Table(title=f"bundle {result.out}", show_header=False)
    table.add_column(justify="left", style="bold")
    table.add_column(justify="left")
    table.add_row("model", f"{model['name']} (depth {model['depth']} of {model['original_depth']}, kept layers "
                  f"{','.join(map(str, model['kept_layers'] or []))})")
    table.add_row("variant", f"{model['variant']} on {m['target']['name']} ({m['selection']['variant_reason']})")
    table.add_row("threads", f"{m['selection']['threads'] or 'ONNX Runtime default'} ({m['selection']['threads_reason']})")
    sel = m["selection"]
    table.add_row("selected by", f"--max-drop {sel['max_drop_points']:g}" if sel["by"] == "max-drop"
                  else f"--depth {sel['depth']}")
    table.add_row(f"expected dev {exp['main_key']}",
                  f"{_fmt(exp['dev_score'], '.4f')} ({_fmt(exp['delta_points'], '+.2f')} points vs full "
                  f"{exp['reference']['model']}: {_fmt(exp['reference']['dev_score'], '.4f')})")
    if lat["status"] == "measured":
        h = lat["headline"]
        table.add_row("latency", f"{h['latency_ms']:.2f} ms (p90 {h['p90_ms']:.2f}) at batch {h['batch']}, seq {h['seq']}, "
                      f"{h['threads']} thread(s); speedup {_fmt(h['speedup_vs_full_fp32'], '.2f')}x vs full fp32"
                      + (" [emulated]" if lat.get("emulated") else ""))
    else:
        table.add_row("latency", f"not measured ({lat['reason']})")
    if chk["status"] == "skipped":
        table.add_row("runtime check", f"skipped ({chk['reason']})")
    else:
        table.add_row("runtime check", f"{chk['status']}: dev {exp['main_key']} {chk['dev_score']:.4f} on "
                      f"{chk['examples']} examples through glp_runtime, tokenization identical on "
                      f"{chk['tokenization']['checked'] - chk['tokenization']['mismatches']}/{chk['tokenization']['checked']}")
    if chk.get("note"):
        table.add_row("", chk["note"])
    table.add_row("files", ", ".join(f"{n} ({r['size'] / 1e6:.2f} MB)" for n, r in m["files"].items()))
    console.print(table)
    for w in m["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"serve it: glp-runtime serve {result.out} --port 8000")
