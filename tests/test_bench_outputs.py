"""The benchmarks' own results files (``--json``/``--out``, benchmarks/results_file.py): refused before any work
when they would land on a run's files or replace a results file of another kind, else written as versioned
JSON with the environment, atomically, like every glp-bench results file."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from glp_bench.bench.results import FORMAT as LATENCY_FORMAT
from glp_bench.core.rundir import FORMAT as RUN_FORMAT
from glp_bench.core.rundir import VERSION as RUN_VERSION

from .conftest import REPO

BENCH = REPO / "benchmarks"
# gpu_check's --out is a folder of logs it makes on the device machine, from a pack, not a results file
NOT_RESULTS = {"gpu_check.py"}
OUTPUT_OPTION = re.compile(r"add_argument\(\s*\"(--json|--out)\"")


def _bench(script: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture
def run(tmp_path):
    """A finished run's records, as bench_main_job --reuse reads them."""
    r = tmp_path / "run"
    r.mkdir()
    (r / "manifest.json").write_text(json.dumps({
        "format": RUN_FORMAT, "version": RUN_VERSION, "config": {"task": "cola"}, "strategies": {},
        "models": {"depth-03": {"depth": 3, "kept_layers": [0, 1, 2], "strategies": ["glp"],
                                "train": {"seconds": 60.0}}}}))
    return r


def test_every_benchmark_results_option_is_checked_and_written_through_results_file():
    scripts = sorted(p for p in BENCH.glob("*.py") if p.name not in NOT_RESULTS)
    with_output = [p for p in scripts if OUTPUT_OPTION.search(p.read_text())]
    assert len(with_output) >= 9
    assert not [p.name for p in with_output if "results_file.check(" not in p.read_text()]
    assert not [p.name for p in scripts if ".write_text(json.dumps(" in p.read_text()]  # atomic, versioned instead


def test_an_output_over_the_runs_manifest_is_refused_before_any_work(run):
    before = (run / "manifest.json").read_bytes()
    r = _bench("bench_main_job.py", "--reuse", "--run", str(run), "--out", str(run / "manifest.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "--out" in last and "manifest of the run" in last and "choose another file" in last
    assert (run / "manifest.json").read_bytes() == before and r.stdout == ""  # no table printed: nothing ran
    # the score suite would train for minutes first: refused at once
    r = _bench("score_suite.py", "--json", str(run / "manifest.json"), timeout=60)
    assert r.returncode == 2 and "manifest of the run" in r.stderr and "pass" not in r.stdout
    assert (run / "manifest.json").read_bytes() == before


def test_the_results_file_is_versioned_with_the_environment_and_replaces_only_its_own_kind(run, tmp_path):
    out = tmp_path / "main-job.json"
    r = _bench("bench_main_job.py", "--reuse", "--run", str(run), "--out", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["format"] == "glp-bench-main-job" and doc["version"] == 1 and doc["environment"]["python"]
    assert {(p["part"], p["seconds"]) for p in doc["parts"]} >= {("final depth-03 (glp)", 60.0)}
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write's temp file is gone
    r = _bench("bench_main_job.py", "--reuse", "--run", str(run), "--out", str(out))  # its own kind: replaced
    assert r.returncode == 0, r.stderr
    other = tmp_path / "cpu.json"
    other.write_text(json.dumps({"format": LATENCY_FORMAT, "version": 1, "measurements": []}))
    r = _bench("bench_main_job.py", "--reuse", "--run", str(run), "--out", str(other))
    assert r.returncode == 2 and f"a {LATENCY_FORMAT} results file" in r.stderr.strip().splitlines()[-1]
    assert json.loads(other.read_text())["format"] == LATENCY_FORMAT
