"""The benchmarks' own results files (``--json``/``--out``), held to the rules of every glp-bench results file:
checked before any work (``check``: a writable file, never over a run's or a bundle's files nor a results file
of another kind, ``glp_bench.core.outputs``), then written atomically as versioned JSON with the environment
recorded (``write``: ``glp_bench.core.jsonio``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from glp_bench.core.errors import GlpError
from glp_bench.core.jsonio import atomic_write_json, stamp
from glp_bench.core.preflight import writable_file


def check(parser: argparse.ArgumentParser, path: str | os.PathLike | None, option: str, kind: str) -> Path | None:
    """``path`` may take a ``kind`` results file; else one error line, exit 2 (``parser.error``), before any work."""
    if path is None:
        return None
    try:
        return writable_file(path, option, writes=kind, example=f"{kind.removeprefix('glp-bench-')}.json")
    except GlpError as e:
        parser.error(str(e))


def write(path: str | os.PathLike, kind: str, version: int, body: dict) -> None:
    """``body`` as a versioned ``kind`` file with the environment, written atomically."""
    atomic_write_json(path, stamp(kind, version, body))
    print(f"written: {path}", flush=True)
