"""Issue 32: a run is written only inside itself, by one writer, from the data it was pruned on. One lock per
resolved directory (every spelling of a run, every spelling of a bundle's --out), deploy refuses a run being
written, manifest paths and symlinked folders that lead out of the run are refused, export and deploy refuse
changed data, a resumed export keeps the int8 choice, export's temp folders are cleaned, and a full or
read-only disk is one clear line (exit 2), never an internal error."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from .conftest import REPO, assert_clean_error, run_cli
from .test_export import make_run


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def write_manifest(run_dir: Path, m: dict) -> None:
    (run_dir / "manifest.json").write_text(json.dumps(m))


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A run of two depths (4 and 2) exported to fp32, with the data identity prune records."""
    from glp_bench.core.rundir import RunDir
    from glp_bench.data.identity import data_identity
    from glp_bench.export.stage import export_run

    root = tmp_path_factory.mktemp("confine")
    run_dir = make_run(root, "bert", {4: [], 2: [1, 2]})
    run = RunDir(run_dir).load()
    run.data["identity"] = {"model": {"source": "hub", "id": "tiny", "files": {}},
                            "data": data_identity("cola", run.config["data_dir"])}
    run.save()
    export_run(run_dir, variants="fp32").raise_for_failures()
    return root


@pytest.fixture
def run_copy(exported, tmp_path) -> Path:
    """A private copy of the exported run (and its data) in ``tmp_path``; returns the run directory."""
    shutil.copytree(exported, tmp_path / "w")
    run_dir = tmp_path / "w" / "run"
    m = manifest(run_dir)
    m["config"]["data_dir"] = str(tmp_path / "w" / "glue" / "CoLA")
    m["identity"]["data"]["id"] = m["config"]["data_dir"]
    write_manifest(run_dir, m)
    return run_dir


def deploy_argv(run_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["deploy", "--run", str(run_dir), "--target", "cpu", "--depth", "2", "--variant", "fp32",
            "--out", str(out), *extra]


# --- one lock per resolved directory -------------------------------------------------------------------
HOLD = ("import sys; from glp_bench.core.runlock import acquire; acquire(sys.argv[1], 'glp-bench test-holder', "
        "sys.argv[2]); print('held', flush=True); sys.stdin.read()")


def hold(path: Path, option: str = "--run") -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), option], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout.readline().strip() == "held"
    return p


def test_every_spelling_of_a_run_meets_one_lock(tmp_path):
    from glp_bench.core.rundir import RunDir
    from glp_bench.core.runlock import lock_path

    run_dir = tmp_path / "runs" / "r"
    RunDir(run_dir).create({"task": "cola"})
    (tmp_path / "link").symlink_to(run_dir)
    (tmp_path / "runs-link").symlink_to(tmp_path / "runs")
    spellings = [run_dir, tmp_path / "link", tmp_path / "runs-link" / "r", tmp_path / "runs" / ".." / "runs" / "r"]
    assert {lock_path(s) for s in spellings} == {run_dir.resolve().parent / ".r.lock"}
    holder = hold(run_dir)
    try:
        for s in spellings[1:]:
            proc = run_cli("export", "--run", str(s))
            assert_clean_error(proc, f"is being written by pid {holder.pid}")
            assert "test-holder" in proc.stderr
    finally:
        holder.kill()
        holder.wait()


def test_deploy_locks_its_resolved_out_not_the_folder(run_copy, tmp_path):
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles-link").symlink_to(tmp_path / "bundles")
    holder = hold(tmp_path / "bundles" / "b", "--out")
    try:
        proc = run_cli(*deploy_argv(run_copy, tmp_path / "bundles-link" / "b", "--no-check"))
        assert_clean_error(proc, f"is being written by pid {holder.pid}")
        assert "another --out" in proc.stderr
        assert not (tmp_path / "bundles" / "b").exists()
        # another bundle in the same folder is not held up
        proc = run_cli(*deploy_argv(run_copy, tmp_path / "bundles-link" / "c", "--no-check"))
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "bundles" / "c" / "bundle.json").is_file()
        assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == [".b.lock", "c"]  # c's lock: removed
    finally:
        holder.kill()
        holder.wait()


def test_deploy_refuses_a_run_that_is_being_written(run_copy, tmp_path):
    holder = hold(run_copy)
    try:
        proc = run_cli(*deploy_argv(run_copy, tmp_path / "b", "--no-check"))
        assert_clean_error(proc, f"is being written by pid {holder.pid}")
        assert "wait for it to finish, then deploy" in proc.stderr
        assert not (tmp_path / "b").exists()
    finally:
        holder.kill()
        holder.wait()
    proc = run_cli(*deploy_argv(run_copy, tmp_path / "b", "--no-check"))  # the writer gone: deploys
    assert proc.returncode == 0, proc.stderr


# --- every path inside the run -------------------------------------------------------------------------
def test_a_manifest_path_out_of_the_run_is_refused_and_nothing_is_written_outside(run_copy, tmp_path):
    outside = tmp_path / "x"
    shutil.copytree(run_copy / "depth-02" / "model", outside / "model")
    before = files_under(outside)
    m = manifest(run_copy)
    m["models"]["depth-02"]["path"] = "../../x/model"
    write_manifest(run_copy, m)
    for argv in (["export", "--run", str(run_copy), "--variants", "fp32", "--force"],
                 deploy_argv(run_copy, tmp_path / "b"), ["report", "--run", str(run_copy)]):
        proc = run_cli(*argv)
        assert_clean_error(proc, "models.depth-02.path '../../x/model' resolves to")
        assert "outside the run" in proc.stderr and "restore the manifest entry" in proc.stderr
    assert files_under(outside) == before  # no onnx/ written beside the outside model
    assert not (tmp_path / "b").exists()
    # an ONNX file recorded outside the run is refused the same way
    m["models"]["depth-02"]["path"] = "depth-02/model"
    m["models"]["depth-02"]["onnx"]["fp32"]["path"] = "../x/model.onnx"
    write_manifest(run_copy, m)
    assert_clean_error(run_cli(*deploy_argv(run_copy, tmp_path / "b")), "models.depth-02.onnx.fp32.path")


def test_a_symlinked_depth_folder_is_refused_and_nothing_is_written_through_it(run_copy, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(run_copy / "depth-02", outside)
    (run_copy / "depth-02").symlink_to(outside)
    before = {p: p.stat().st_mtime_ns for p in outside.rglob("*")}
    for argv in (["export", "--run", str(run_copy), "--variants", "fp32", "--force"],
                 deploy_argv(run_copy, tmp_path / "b")):
        proc = run_cli(*argv)
        assert_clean_error(proc, f"models.depth-02.path 'depth-02/model' resolves to {outside.resolve()}/model")
    assert {p: p.stat().st_mtime_ns for p in outside.rglob("*")} == before
    assert not (tmp_path / "b").exists()


def test_a_symlink_that_stays_inside_the_run_is_fine(tmp_path):
    from glp_bench.core.errors import RunDirError
    from glp_bench.core.rundir import RunDir

    run = RunDir(tmp_path / "run").create({"task": "cola"})
    (run.path / "store" / "m").mkdir(parents=True)
    (run.path / "depth-03").mkdir()
    (run.path / "depth-03" / "model").symlink_to(run.path / "store" / "m")
    assert run.model_path("depth-03") == run.path / "depth-03" / "model"
    with pytest.raises(RunDirError, match=re.escape("models.../../evil resolves to")):
        run.model_path("../../evil")


# --- the data the run was pruned on --------------------------------------------------------------------
def test_export_and_deploy_refuse_changed_dev_data(run_copy, tmp_path):
    dev = Path(manifest(run_copy)["config"]["data_dir"]) / "dev.tsv"
    before = manifest(run_copy)
    dev.write_text(dev.read_text().replace("\t1\t", "\t0\t", 1))
    for argv in (["export", "--run", str(run_copy), "--variants", "fp32", "--force"],
                 deploy_argv(run_copy, tmp_path / "b")):
        proc = run_cli(*argv)
        assert_clean_error(proc, "was pruned on other data (data file dev.tsv changed)")
        assert "--fresh" in proc.stderr
    assert manifest(run_copy) == before and not (tmp_path / "b").exists()
    # --no-check reads no data: the bundle only carries what the run recorded
    assert run_cli(*deploy_argv(run_copy, tmp_path / "b", "--no-check")).returncode == 0


# --- the int8 choice survives a kill -------------------------------------------------------------------
def test_a_resumed_export_ships_the_int8_recipe_chosen_before_the_kill(run_copy, monkeypatch):
    from glp_bench.export import int8, int8_select
    from glp_bench.export.stage import export_run

    def timer(fastest):  # the harness's timings, made up: which candidate "wins" is decided here
        return lambda paths, spec, vocab=None: {n: {"latency_ms": 1.0 if n == fastest else 2.0} for n in paths}

    real_check = int8.check_score
    monkeypatch.setattr(int8_select, "harness_latencies", timer("fused-tensor"))
    monkeypatch.setattr(int8, "check_score", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed after the first model's choice, before its int8 is recorded
        export_run(run_copy, variants="fp32,int8")
    m = manifest(run_copy)
    assert m["int8_choice"]["winner"] == "fused-tensor" and m["int8_choice"]["on"] == "depth-04"
    assert "int8" not in m["models"]["depth-04"]["onnx"]
    # resumed: the timing would now pick another candidate; the recorded choice is shipped everywhere
    monkeypatch.setattr(int8_select, "harness_latencies", timer("unfused-s8-channel"))
    monkeypatch.setattr(int8, "check_score", real_check)
    export_run(run_copy, variants="fp32,int8").raise_for_failures()
    models = manifest(run_copy)["models"]
    first, second = (models[n]["onnx"]["int8"]["build"] for n in ("depth-04", "depth-02"))
    assert first["candidate"] == second["candidate"] == "fused-tensor"
    assert first["selection"]["mode"] == "measured" and len(first["selection"]["candidates"]) >= 4
    schema = json.loads((REPO / "tests" / "schemas" / "run.schema.json").read_text())["properties"]["int8_choice"]
    jsonschema.validate(manifest(run_copy)["int8_choice"], schema)
    assert second["selection"]["mode"] == "reused from depth-04"
    # --force times again
    export_run(run_copy, variants="fp32,int8", force=True).raise_for_failures()
    m = manifest(run_copy)
    assert m["int8_choice"]["winner"] == m["models"]["depth-02"]["onnx"]["int8"]["build"]["candidate"] \
        == "unfused-s8-channel"


# --- temporary folders ---------------------------------------------------------------------------------
def test_every_temp_folder_export_makes_is_cleaned_by_the_next_writer():
    from glp_bench.core.preflight import EXPORT_TEMP_PREFIXES

    used = set()
    for path in (REPO / "glp_bench" / "export").glob("*.py"):
        used |= set(re.findall(r'prefix="(\.[\w-]+-)"', path.read_text()))
    assert used and used <= set(EXPORT_TEMP_PREFIXES), used - set(EXPORT_TEMP_PREFIXES)


def test_a_killed_int8_selection_leaves_nothing_after_the_next_start(run_copy, tmp_path):
    onnx = run_copy / "depth-02" / "onnx"
    (onnx / ".int8-cands-abc").mkdir()
    (onnx / ".int8-cands-abc" / "fused.onnx").write_bytes(b"x" * 1000)
    (onnx / ".src-1").mkdir()
    (run_copy / "depth-02" / ".model.tmp-99").mkdir()
    outside = tmp_path / "outside-onnx"
    (outside / ".q-keep").mkdir(parents=True)
    (run_copy / "depth-09").mkdir()
    (run_copy / "depth-09" / "onnx").symlink_to(outside)  # a stray link: never followed out of the run
    proc = run_cli("export", "--run", str(run_copy), "--variants", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert not [p.name for p in onnx.iterdir() if p.name.startswith(".")]
    assert not (run_copy / "depth-02" / ".model.tmp-99").exists() and (outside / ".q-keep").is_dir()


# --- a full or read-only disk --------------------------------------------------------------------------
def test_disk_faults_are_recognised_through_wrapping_libraries():
    from glp_bench.core.diskerrors import disk_fault, message

    assert disk_fault(OSError(errno.ENOSPC, "No space left on device", "/r/m.json")) == ("full", "/r/m.json")
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as inner:
            raise RuntimeError("export failed") from inner
    except RuntimeError as e:
        assert disk_fault(e) == ("read-only", None)
    assert disk_fault(Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")) == ("full", None)
    assert disk_fault(ValueError("bad shape")) is None
    assert message("full", None, "runs/x").startswith("no space left on the device holding runs/x; free some space")


def test_report_output_on_a_full_disk_is_one_line(run_copy, tmp_path, monkeypatch, capsys):
    """In-process: the real write path (jsonio / the report writer) with fsync failing as on a full disk."""
    from glp_bench import cli

    out = tmp_path / "r.md"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert cli.main(["report", "--run", str(run_copy), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"glp-bench: error: no space left on the device holding {out}; free some space (finished work "
                   "is saved: re-run the same command to resume)"]
    assert not out.exists() and not list(tmp_path.glob(".r.md*"))


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    folder = tmp_path / "small"
    yield lambda size: (_mount_tmpfs(folder, size), folder)[1]
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_export_into_a_full_disk_then_resume(run_copy, tmpfs):
    size = sum(p.stat().st_size for p in run_copy.rglob("*") if p.is_file() and "onnx" not in p.parts)
    disk = tmpfs(f"{size // 1024 + 96}k")  # the run fits; its ONNX files do not
    run_dir = disk / "run"
    shutil.copytree(run_copy, run_dir, ignore=shutil.ignore_patterns("onnx"))
    m = manifest(run_dir)
    for rec in m["models"].values():
        rec.pop("onnx")
    write_manifest(run_dir, m)
    proc = run_cli("export", "--run", str(run_dir), "--variants", "fp32")
    assert_clean_error(proc, f"no space left on the device holding {run_dir}")
    assert manifest(run_dir)["models"]  # still a valid manifest
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    proc = run_cli("export", "--run", str(run_dir), "--variants", "fp32")
    assert proc.returncode == 0, proc.stderr
    want = {n: r["onnx"]["fp32"]["dev_scores"] for n, r in manifest(run_copy)["models"].items()}
    assert {n: r["onnx"]["fp32"]["dev_scores"] for n, r in manifest(run_dir)["models"].items()} == want
    assert not list(run_dir.rglob(".*"))  # no temp file left


def test_export_of_a_read_only_run_is_refused_before_work(run_copy):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    mounted = subprocess.run(["mount", "--bind", str(run_copy), str(run_copy)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(run_copy)], check=True)
        before = manifest(run_copy)
        proc = run_cli("export", "--run", str(run_copy), "--variants", "fp32", "--force")
        assert_clean_error(proc, f"{run_copy} is read-only (a read-only file system)")
        assert manifest(run_copy) == before
    finally:
        subprocess.run(["umount", "-l", str(run_copy)], capture_output=True)
