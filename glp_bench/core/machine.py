"""Facts about this machine's CPU, from one reading of ``/proc/cpuinfo`` (Linux), with portable fallbacks."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


@functools.cache
def _processors() -> tuple[dict[str, str], ...]:
    """One dict per processor block of ``/proc/cpuinfo`` (keys lower-cased); empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    blocks, cur = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
        elif ":" in line:
            key, value = line.split(":", 1)
            cur[key.strip().lower()] = value.strip()
    return tuple(blocks)


def _first(*keys: str) -> str | None:
    for block in _processors():
        for key in keys:
            if block.get(key):
                return block[key]
    return None


def cpu_model() -> str:
    """The CPU's marketing name, else ``platform.processor()``."""
    return _first("model name", "hardware", "cpu model") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``flags`` on x86 Linux, ``Features`` on ARM Linux); empty elsewhere."""
    return set((_first("flags", "features") or "").split())


def logical_cores() -> int:
    return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores (hyper-threads not counted) when Linux says so, else the logical count."""
    cores = {(b.get("physical id"), b["core id"]) for b in _processors() if "core id" in b}
    return min(len(cores), logical_cores()) if cores else logical_cores()
