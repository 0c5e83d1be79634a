"""Fault benchmark (issues 17 and 32): kill -9 at seeded random moments during ``prune``, ``export`` and
``deploy`` on a tiny model, resume each by re-running the same command, and compare the result with an
uninterrupted run; then start two writers on one run directory at once (also through a symlink), fill the
disk under ``prune`` and ``deploy`` (a small tmpfs as root, else a simulated ENOSPC) and resume, and kill an
``export`` whose int8 recipe is timed (``--int8-candidate auto``) during the selection and after it. Prints a
table; exit 1 on any difference.

    python benchmarks/bench_faults.py                 # 12 kill trials (4 per stage) + the other trials
    python benchmarks/bench_faults.py --trials 30 --seed 7 --json faults.json
    python benchmarks/bench_faults.py --only issue32   # only the issue-32 trials (no kill trials)

What "the same" means per stage: prune -- every GLP step's candidates and scores, the removal orders, and
every model's kept layers, dev scores and weight files (sha256); export -- every variant's status and dev
scores; deploy -- the bundle's files (sha256) and self-check, ``glp-runtime verify`` passing, and no
``.NAME.tmp-*`` left beside it. Two writers: exactly one is refused (exit 2, naming the holder) and the
other's result equals the uninterrupted run. Disk full: the command ends with exit 2 naming the device, the
manifest stays valid, and the resume after freeing space equals the uninterrupted run. int8 killed: no temp
folder left, every model ships the one recipe chosen (recorded before the kill, or chosen anew when the kill
came before the choice), and statuses and dev scores equal an uninterrupted export of that recipe (which
recipe an uninterrupted run times fastest is itself noise on a tiny model, so it is compared per recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_file

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "glp_bench.cli", *args]


def run(cmd: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout, cwd=REPO)


class Setup:
    """The tiny model, data, and the three commands, each with its uninterrupted result."""

    def __init__(self, root: Path):
        from tests.conftest import build_tiny_model, write_cola

        self.root = root
        self.model = build_tiny_model("bert", root / "model", layers=3)
        self.data = write_cola(root / "glue" / "CoLA", n_train=64, n_dev=32)

    def prune_cmd(self, run_dir: Path) -> list[str]:
        return cli("prune", "--task", "cola", "--model", str(self.model), "--data-dir", str(self.data),
                   "--budget", "smoke", "--lr", "1e-3", "--strategy", "glp", "--min-depth", "1",
                   "--run", str(run_dir), "--device", "cpu")

    @staticmethod
    def export_cmd(run_dir: Path) -> list[str]:
        return cli("export", "--run", str(run_dir), "--variants", "fp32,int8", "--int8-candidate", "unfused-s8") \
            if _has_option("export", "--int8-candidate") else cli("export", "--run", str(run_dir), "--variants", "fp32,int8")

    @staticmethod
    def deploy_cmd(run_dir: Path, out: Path, force: bool = False) -> list[str]:
        return cli("deploy", "--run", str(run_dir), "--target", "cpu", "--depth", "2", "--variant", "int8",
                   "--out", str(out), *(["--force"] if force else []))


def _has_option(command: str, option: str) -> bool:
    return option in run(cli(command, "--help")).stdout


# --- what is compared ----------------------------------------------------------------------------------
def prune_result(run_dir: Path) -> dict:
    m = json.loads((run_dir / "manifest.json").read_text())
    steps = [{"chosen": s.get("chosen"), "candidates": {k: v.get("score") for k, v in s["candidates"].items()}}
             for s in m["strategies"]["glp"]["steps"]]
    models = {n: {"kept": r["kept_layers"], "dev": r.get("dev_scores"),
                  "weights": {f: rec["sha256"] for f, rec in (r.get("files") or {}).items()}}
              for n, r in m["models"].items()}
    return {"order": m["strategies"]["glp"]["order"], "steps": steps, "models": models}


def export_result(run_dir: Path) -> dict:
    m = json.loads((run_dir / "manifest.json").read_text())
    return {n: {v: (r.get("status"), r.get("dev_scores")) for v, r in (rec.get("onnx") or {}).items()}
            for n, rec in m["models"].items()}


def deploy_result(out: Path) -> dict:
    b = json.loads((out / "bundle.json").read_text())
    verify = run([sys.executable, "-m", "glp_runtime", "verify", str(out)])
    leftovers = sorted(p.name for p in out.parent.glob(f".{out.name}.*") if not p.name.endswith(".lock"))
    return {"files": {k: v["sha256"] for k, v in b["files"].items()}, "check": b["self_check"].get("dev_score"),
            "verify_rc": verify.returncode, "leftovers": leftovers}


def diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


# --- one kill trial ------------------------------------------------------------------------------------
def kill_at(cmd: list[str], delay: float) -> tuple[bool, float]:
    """Start ``cmd``; SIGKILL its process group after ``delay`` s. (killed?, seconds it ran)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO,
                         start_new_session=True)
    try:
        p.wait(timeout=delay)
        return False, time.monotonic() - t0
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return True, time.monotonic() - t0


def trial(stage: str, setup: Setup, snap: dict, delay: float, work: Path) -> dict:
    work.mkdir(parents=True)
    run_dir = work / "run"
    if stage == "prune":
        cmd = resume = setup.prune_cmd(run_dir)
    else:
        shutil.copytree(snap["pruned" if stage == "export" else "exported"], run_dir)
        if stage == "export":
            cmd = resume = setup.export_cmd(run_dir)
        else:
            out = work / "bundle"
            cmd, resume = setup.deploy_cmd(run_dir, out), setup.deploy_cmd(run_dir, out)
    killed, ran = kill_at(cmd, delay)
    rc = None
    if killed:
        if stage == "deploy" and (work / "bundle" / "bundle.json").is_file():  # killed after the final rename
            resume = setup.deploy_cmd(run_dir, work / "bundle", force=True)
        proc = run(resume)
        rc = proc.returncode
        if rc != 0:
            return {"stage": stage, "delay_s": delay, "killed": killed, "resume_rc": rc,
                    "differences": [f"resume failed: {proc.stderr.strip().splitlines()[-1:]}"]}
    got = {"prune": lambda: prune_result(run_dir), "export": lambda: export_result(run_dir),
           "deploy": lambda: deploy_result(work / "bundle")}[stage]()
    want = snap[stage]
    return {"stage": stage, "delay_s": round(delay, 2), "ran_s": round(ran, 2), "killed": killed, "resume_rc": rc,
            "differences": diff(want, got)}


def two_writers(stage: str, setup: Setup, snap: dict, work: Path, symlink: bool = False) -> dict:
    """Two identical writers started together on one run directory (``symlink``: the second through a link)."""
    work.mkdir(parents=True)
    run_dir = work / "run"
    if stage == "export":
        shutil.copytree(snap["pruned"], run_dir)
    spellings = [run_dir, run_dir]
    if symlink:
        (work / "link").symlink_to(run_dir)
        spellings[1] = work / "link"
    cmds = [setup.prune_cmd(r) if stage == "prune" else setup.export_cmd(r) for r in spellings]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
             for cmd in cmds]
    outs = [p.communicate(timeout=900) for p in procs]
    rcs = sorted(p.returncode for p in procs)
    refused = [e for (_, e), p in zip(outs, procs, strict=True) if p.returncode == 2]
    problems = []
    if rcs != [0, 2] or not refused or "is being written by pid" not in refused[0]:
        problems.append(f"exit statuses {rcs}, expected one 0 and one 2 naming the holder")
    got = prune_result(run_dir) if stage == "prune" else export_result(run_dir)
    problems += diff(snap[stage], got)
    return {"stage": f"{stage} x2" + (" link" if symlink else ""), "delay_s": None, "killed": None, "resume_rc": rcs,
            "differences": problems}


# --- a full disk -------------------------------------------------------------------------------------------
def _mount(folder: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    args = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)] if "remount" not in options \
        else ["mount", "-o", options, str(folder)]
    return subprocess.run(args, capture_output=True).returncode == 0


SIMULATED_FULL = """import errno, os, sys
left = [int(sys.argv[1])]
real = os.fsync
def fsync(fd):
    if left[0] <= 0:
        raise OSError(errno.ENOSPC, 'No space left on device')
    left[0] -= 1
    real(fd)
os.fsync = fsync
from glp_bench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def disk_full(stage: str, setup: Setup, snap: dict, work: Path) -> dict:
    """``prune`` or ``deploy`` writing to a disk that fills up: exit 2 naming the device, then (space freed) the
    same command resumes to the uninterrupted result. A tmpfs of half the result's size where this process may
    mount one (root), else ENOSPC from the atomic writes' fsync after a few of them (in-process)."""
    work.mkdir(parents=True)
    disk = work / "disk"
    disk.mkdir()
    need = snap["sizes"][stage]
    real = _mount(disk, f"size={max(need // 2 // 1024, 8)}k")
    if stage == "prune":
        target = disk / "run"
        cmd = setup.prune_cmd(target)
    else:
        run_dir = work / "run"
        shutil.copytree(snap["exported"], run_dir)
        target = disk / "bundle"
        cmd = setup.deploy_cmd(run_dir, target)
    try:
        first = run(cmd) if real else run([sys.executable, "-c", SIMULATED_FULL, "3" if stage == "prune" else "1", *cmd[3:]])
        problems = []
        if first.returncode != 2 or "no space left on the device holding" not in first.stderr:
            problems.append(f"full disk: exit {first.returncode}, {first.stderr.strip().splitlines()[-1:]}")
        if stage == "prune":
            try:
                json.loads((target / "manifest.json").read_text())
            except (OSError, ValueError) as e:
                problems.append(f"manifest not valid after the full disk: {e}")
        if real:
            _mount(disk, f"remount,size={need * 4 // 1024 + 1024}k")
        again = run(cmd)
        if again.returncode != 0:
            problems.append(f"resume failed: {again.stderr.strip().splitlines()[-1:]}")
        else:
            got = prune_result(target) if stage == "prune" else deploy_result(target)
            problems += diff(snap[stage], got)
        return {"stage": f"{stage} full", "delay_s": None, "killed": None,
                "resume_rc": [first.returncode, again.returncode], "differences": problems,
                "disk": "tmpfs" if real else "simulated ENOSPC"}
    finally:
        if real:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# --- export killed around the int8 selection -------------------------------------------------------------
def int8_uses(run_dir: Path) -> dict:
    m = json.loads((run_dir / "manifest.json").read_text())
    return {n: ((r.get("onnx") or {}).get("int8") or {}).get("build", {}).get("candidate") for n, r in m["models"].items()}


def kill_when(cmd: list[str], ready, timeout: float = 900) -> bool:
    """Start ``cmd``; SIGKILL its process group as soon as ``ready()``; False when it ended first."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO,
                         start_new_session=True)
    deadline = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < deadline:
        if ready():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.02)
    p.wait()
    return False


def int8_killed(moment: str, setup: Setup, snap: dict, work: Path, forced: dict) -> dict:
    """Kill an ``--int8-candidate auto`` export during the candidates' selection (``selecting``: their temp
    folder exists) or once the choice is recorded (``chosen``), resume it, and compare."""
    work.mkdir(parents=True)
    run_dir = work / "run"
    shutil.copytree(snap["pruned"], run_dir)
    cmd = cli("export", "--run", str(run_dir), "--variants", "fp32,int8")

    def selecting() -> bool:
        return any(run_dir.glob("*/onnx/.int8-cands-*"))

    def chosen() -> bool:
        try:
            return "int8_choice" in json.loads((run_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            return False

    killed = kill_when(cmd, selecting if moment == "selecting" else chosen)
    before = (json.loads((run_dir / "manifest.json").read_text()).get("int8_choice") or {}).get("winner")
    proc = run(cmd)
    problems = [] if killed else ["the export finished before the kill"]
    if proc.returncode != 0:
        return {"stage": f"int8 {moment}", "delay_s": None, "killed": killed, "resume_rc": proc.returncode,
                "differences": [f"resume failed: {proc.stderr.strip().splitlines()[-1:]}"]}
    left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob(".*"))
    if left:
        problems.append(f"left behind: {left}")
    uses = set(int8_uses(run_dir).values())
    if len(uses) != 1:
        problems.append(f"models ship different int8 recipes: {int8_uses(run_dir)}")
    winner = next(iter(uses))
    if before and winner != before:
        problems.append(f"the recipe chosen before the kill was {before}, the resume shipped {winner}")
    if winner not in forced:
        ref = work.parent / f"forced-{winner}"
        shutil.copytree(snap["pruned"], ref)
        run(cli("export", "--run", str(ref), "--variants", "fp32,int8", "--int8-candidate", winner))
        forced[winner] = export_result(ref)
    problems += diff(forced[winner], export_result(run_dir))
    return {"stage": f"int8 {moment}", "delay_s": None, "killed": killed, "resume_rc": proc.returncode,
            "differences": problems, "winner": winner}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=12, help="kill trials in all, spread over the three stages (default 12)")
    ap.add_argument("--seed", type=int, default=17, help="seed of the kill moments (default 17)")
    ap.add_argument("--stages", default="prune,export,deploy",
                    help="comma-separated stages to kill (default prune,export,deploy); two writers run for prune and "
                    "export when listed")
    ap.add_argument("--json", default=None, help="write every trial's record to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    ap.add_argument("--only", choices=["issue32"], default=None,
                    help="issue32: only the symlinked-writer, disk-full and int8-kill trials (no kill trials)")
    args = ap.parse_args(argv)
    results_file.check(ap, args.json, "--json", "glp-bench-faults")
    if args.only:
        args.trials = 0
    stages = [s for s in args.stages.split(",") if s]
    if not stages or any(s not in ("prune", "export", "deploy") for s in stages):
        ap.error(f"--stages takes prune, export, deploy; got {args.stages!r}")
    if 0 < args.trials < len(stages):
        ap.error("--trials must be at least one per stage (or 0: no kill trials)")
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="glp-faults-"))
    try:
        setup = Setup(root)
        snap: dict = {}
        timings = {}
        log("uninterrupted reference: prune, export, deploy ...")
        for stage in ("prune", "export", "deploy"):
            t0 = time.monotonic()
            if stage == "prune":
                proc = run(setup.prune_cmd(root / "ref"))
            elif stage == "export":
                shutil.copytree(root / "ref", root / "pruned")
                proc = run(setup.export_cmd(root / "ref"))
            else:
                shutil.copytree(root / "ref", root / "exported")
                proc = run(setup.deploy_cmd(root / "exported", root / "ref-bundle"))
            timings[stage] = time.monotonic() - t0
            if proc.returncode != 0:
                log(f"the uninterrupted {stage} failed: {proc.stderr.strip()[-800:]}")
                return 2
        snap.update(pruned=root / "pruned", exported=root / "exported", prune=prune_result(root / "ref"),
                    export=export_result(root / "ref"), deploy=deploy_result(root / "ref-bundle"))
        log("reference times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
        records = []
        for i in range(args.trials):
            stage = stages[i % len(stages)]
            delay = rng.uniform(0.5, timings[stage] * 1.05)  # mostly mid-work; now and then just after the end
            for attempt in range(4):  # a run that finished before the kill proves little: kill it earlier
                rec = trial(stage, setup, snap, delay, root / f"t{i:02d}-{attempt}")
                if rec["killed"] or rec["differences"]:
                    break
                delay = rng.uniform(0.3, rec["ran_s"])
            records.append(rec)
            log(f"trial {i + 1}/{args.trials}: {stage} killed at {delay:.1f} s: "
                f"{'same' if not rec['differences'] else 'DIFFERENT'}")
        for stage in [s for s in ("prune", "export") if s in stages]:
            for link in ((True,) if args.only else (False, True)):
                records.append(two_writers(stage, setup, snap, root / f"x2-{stage}-{link}", symlink=link))
                log(f"two writers{' (one through a symlink)' if link else ''}, {stage}: "
                    f"{'ok' if not records[-1]['differences'] else 'PROBLEM'}")
        snap["sizes"] = {"prune": _size(root / "pruned"), "deploy": _size(root / "ref-bundle")}  # ref: exported since
        for stage in [s for s in ("prune", "deploy") if s in stages]:
            records.append(disk_full(stage, setup, snap, root / f"full-{stage}"))
            log(f"disk full ({records[-1]['disk']}), {stage}: {'ok' if not records[-1]['differences'] else 'PROBLEM'}")
        if "export" in stages:
            forced: dict = {}
            for moment in ("selecting", "chosen"):
                records.append(int8_killed(moment, setup, snap, root / f"int8-{moment}", forced))
                log(f"export killed {moment} the int8 recipe ({records[-1].get('winner')}): "
                    f"{'same' if not records[-1]['differences'] else 'DIFFERENT'}")
    finally:
        if args.keep:
            log(f"work folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print(f"{'#':>3}  {'stage':<10} {'kill at s':>9}  {'killed':<6}  {'resume rc':<9}  result")
    for i, r in enumerate(records, 1):
        kill = "" if r["delay_s"] is None else f"{r['delay_s']:.2f}"
        killed = "" if r["killed"] is None else ("yes" if r["killed"] else "no*")
        result = "same as uninterrupted" if not r["differences"] else "DIFFERENT: " + "; ".join(r["differences"][:3])
        print(f"{i:>3}  {r['stage']:<10} {kill:>9}  {killed:<6}  {str(r['resume_rc']):<9}  {result}")
    bad = sum(1 for r in records if r["differences"])
    killed = sum(1 for r in records if r["killed"])
    print(f"{len(records)} trials ({killed} killed mid-run; no* = finished before the kill), {bad} with differences")
    if args.json:
        from glp_bench.core.jsonio import atomic_write_json, stamp

        atomic_write_json(args.json, stamp("glp-bench-faults", 1, {"seed": args.seed, "reference_s": timings,
                                                                   "trials": records}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
