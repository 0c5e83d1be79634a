"""A user-named output never replaces, or writes into, what glp-bench owns (``glp_bench.core.outputs``):
``report --output/--plot``, ``latency --out``, ``gate --json``, ``finetune --out`` and ``deploy --out`` on a
run's manifest, lock, model folders or another kind of results file are one clear error (exit 2) that
leaves the file as it was; the run's top folder and ``latency/`` stay open. Results files get the usual
permissions (the umask's), not the private 0600 of a temp file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from glp_bench.core.errors import GlpError
from glp_bench.core.jsonio import atomic_write_json, atomic_write_text, stamp
from glp_bench.core.outputs import check_output, owner, results_format

from .conftest import assert_clean_error, run_cli
from .test_export import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run of two tiny depths (4 and 2), exported to fp32."""
    from glp_bench.export.stage import export_run

    root = tmp_path_factory.mktemp("outputs")
    run = make_run(root, "bert", {4: [], 2: [1, 2]})
    export_run(run, variants="fp32").raise_for_failures()
    (run / "search").mkdir()
    (run / "search" / "step-00.npy").write_bytes(b"\x93NUMPY")
    atomic_write_json(run / "latency" / "cpu.json", stamp("glp-bench-latency", 1, {"measurements": []}))
    return run


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_results_format_reads_the_first_field(run_dir):
    assert results_format(run_dir / "manifest.json") == "glp-bench-run"
    assert results_format(run_dir / "latency" / "cpu.json") == "glp-bench-latency"
    assert results_format(run_dir / "depth-04" / "model" / "config.json") is None
    assert results_format(run_dir / "no-such-file.json") is None


@pytest.mark.parametrize("rel, fragment", [
    ("manifest.json", "the manifest of the run"),
    ("depth-04/onnx/model.onnx", "the folder of its model depth-04"),
    ("depth-02/model/new-file.md", "the folder of its model depth-02"),
    ("search/step-00.npy", "its search folder"),
])
def test_a_file_output_into_the_run_is_refused(run_dir, rel, fragment):
    assert fragment in owner(run_dir / rel)
    with pytest.raises(GlpError, match="would destroy finished work"):
        check_output(run_dir / rel, "--output")


def test_the_lock_and_a_symlink_to_the_manifest_are_refused(run_dir, tmp_path):
    assert "the lock file of the run" in owner(run_dir.parent / f".{run_dir.name}.lock")
    link = tmp_path / "innocent.json"
    link.symlink_to(run_dir / "manifest.json")
    assert "the manifest of the run" in owner(link)


def test_the_run_top_and_latency_stay_open(run_dir):
    for rel in ("report.md", "plot.png", "latency/cpu-second.json", "notes/x.md"):
        assert owner(run_dir / rel) is None, rel
        check_output(run_dir / rel, "--output", writes="glp-bench-report")
    check_output(run_dir / "latency" / "cpu.json", "--out", writes="glp-bench-latency")  # its own kind: merged


def test_another_kind_of_results_file_is_refused(run_dir, tmp_path):
    with pytest.raises(GlpError, match="glp-bench-latency results file"):
        check_output(run_dir / "latency" / "cpu.json", "--json", writes="glp-bench-gate")
    with pytest.raises(GlpError, match="glp-bench-latency results file"):  # a plot is no results file
        check_output(run_dir / "latency" / "cpu.json", "--plot")
    other = tmp_path / "verdict.json"
    atomic_write_json(other, stamp("glp-bench-gate", 1, {}))
    check_output(other, "--json", writes="glp-bench-gate")
    (tmp_path / "plain.txt").write_text("{}")
    check_output(tmp_path / "plain.txt", "--plot")


def test_folder_outputs(run_dir, tmp_path):
    for rel, fragment in (("", "a run directory"), ("depth-04", "depth-04"), ("latency", "its latency folder"),
                          ("depth-04/bundle", "depth-04")):
        with pytest.raises(GlpError, match=fragment):
            check_output(run_dir / rel if rel else run_dir, "--out", folder=True)
    check_output(run_dir / "bundle-cpu", "--out", folder=True)  # a new folder at the run's top
    bundle = tmp_path / "b"
    atomic_write_json(bundle / "bundle.json", stamp("glp-bench-bundle", 1, {}))
    check_output(bundle, "--out", folder=True)  # deploy --force replaces a bundle as a whole
    with pytest.raises(GlpError, match="inside the deploy bundle"):
        check_output(bundle / "model.onnx", "--output")


def test_the_cli_refuses_and_leaves_the_run_as_it_was(run_dir, tmp_path):
    before = digests(run_dir)
    manifest = str(run_dir / "manifest.json")
    assert_clean_error(run_cli("report", "--run", str(run_dir), "--output", manifest), "the manifest of the run")
    assert_clean_error(run_cli("report", "--run", str(run_dir), "--plot", str(run_dir / "latency" / "cpu.json")),
                       "glp-bench-latency results file")
    assert_clean_error(run_cli("report", "--run", str(run_dir), "--output", str(tmp_path / "r.md"),
                               "--plot", str(tmp_path / "r.md")), "the same file")
    assert_clean_error(run_cli("latency", "--run", str(run_dir), "--out", manifest, "--replace", "--no-torch"),
                       "the manifest of the run")
    onnx = str(run_dir / "depth-04" / "onnx" / "model.onnx")
    assert_clean_error(run_cli("gate", onnx, onnx, "--json", manifest), "the manifest of the run")
    assert_clean_error(run_cli("deploy", "--run", str(run_dir), "--target", "cpu", "--depth", "2",
                               "--out", str(run_dir / "depth-02" / "bundle")), "the folder of its model depth-02")
    assert digests(run_dir) == before


def test_finetune_does_not_move_a_model_folder_of_a_run_aside(run_dir, tiny_models, cola_dir):
    before = digests(run_dir)
    proc = run_cli("finetune", "--task", "cola", "--model", str(tiny_models["bert"]), "--data-dir", str(cola_dir),
                   "--out", str(run_dir / "depth-04"), "--force", "--epochs", "1")
    assert_clean_error(proc, "the folder of its model depth-04")
    assert digests(run_dir) == before
    assert not list(run_dir.glob("depth-04.bak-*"))


def test_results_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    atomic_write_text(tmp_path / "b.txt", "y")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o666 & ~old
