"""The ``glp-bench`` command line: thin. Each subcommand lives in ``glp_bench/commands/<name>.py``
with ``add_parser(subparsers)`` (argument definitions) and ``run(args) -> int`` (call the library,
render the result). This module only dispatches and turns errors into exit statuses:

* ``GlpError`` (bad input the user can fix): one line on stderr, exit 2 (1 for a gate regression);
* Ctrl-C: one line saying finished work is kept and how to resume, exit 130;
* a full disk, a read-only file system, a refused write (``core.diskerrors``): one line naming the place, exit 2;
* anything else is a bug: one line naming the exception, exit 3 (``GLP_BENCH_DEBUG=1`` re-raises it
  with its traceback). Every stage saves finished work as it goes, so nothing finished is lost.

Heavy imports (torch, transformers, onnxruntime) happen inside ``run`` so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .core.errors import GlpError

# Order = order in --help.
COMMANDS = [
    "tasks",
    "finetune",
    "prune",
    "export",
    "prune_and_export",
    "latency",
    "report",
    "gate",
    "deploy",
]


class Parser(argparse.ArgumentParser):
    """argparse with glp-bench's error format: one line ``glp-bench: error: ...`` naming the option and where
    the help is, exit status 2 (instead of the usage block and ``glp-bench prune: error: ...``)."""

    def error(self, message: str):
        hint = f"; see '{self.prog} --help'" if self.prog != "glp-bench" else "; see 'glp-bench --help'"
        self.exit(2, f"glp-bench: error: {message}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="glp-bench",
        description=(
            "Greedy layer pruning (GLP) of transformer encoders: prune on a GLUE task, export every "
            "depth to ONNX, measure latency with ONNX Runtime, report score vs speedup, gate CI."
        ),
        epilog="Run 'glp-bench COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"glp-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"glp_bench.commands.{name}")
        sp = module.add_parser(sub)
        sp.set_defaults(_run=module.run)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _wide_tables_in_logs() -> None:
    """rich cuts tables to 80 columns when stdout is a file or pipe (logs, CI); it reads ``COLUMNS``."""
    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        os.environ["COLUMNS"] = "160"


def _written_place(args) -> str | None:
    """Where the command writes (for a disk fault whose library named no file)."""
    for key in ("out", "output", "run_dir"):
        value = getattr(args, key, None)
        if isinstance(value, str | os.PathLike):
            return str(value)
    return None


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    _wide_tables_in_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except GlpError as e:
        print(f"glp-bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(
            "glp-bench: interrupted; finished work is saved, re-run the same command to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # a bug, not bad input, unless the disk is full or read-only
        from .core.diskerrors import disk_fault, message

        fault = disk_fault(e)
        if fault is not None:
            print(f"glp-bench: error: {message(*fault, _written_place(args))}", file=sys.stderr)
            return 2
        if os.environ.get("GLP_BENCH_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"glp-bench: internal error: {type(e).__name__}: {first} (finished work is saved; set "
              "GLP_BENCH_DEBUG=1 for the traceback and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
