#!/usr/bin/env python
"""A multi-node Ray run simulated on this machine, and a worker node killed in the middle of a GLP step.

    python benchmarks/bench_cluster.py [--trials N] [--no-kill-head] [--timeout S] [--keep]

Needs Ray (``pip install 'glp-bench[ray]'``). Starts a real Ray cluster on loopback (127.0.0.2, own auth token): a head (``ray start --head
--num-cpus 0``: it runs no fine-tunes) and two worker nodes (``ray start --address ... --num-cpus 1``), each a
``ray start --block`` process in its own session, with its own ``--temp-dir`` and ports. The data: a tiny random
6-layer BERT and tiny CoLA-layout data (built like tests/conftest.py), ``--budget smoke --strategy glp,top
--min-depth 4`` (two GLP steps of 6 and 5 candidates, then the finals).

1. ``glp-bench prune`` with the local executor (torch on one thread), then with ``--executor ray --ray-address
   HEAD`` on the cluster: the same removal orders, candidate scores and dev scores (to 6 digits; also reported:
   bit-identical or not) and the same model files.
2. ``--trials N`` times: the same Ray run again (a fresh run directory, a replacement worker node started when
   one was killed before); when a candidate of GLP step 2 runs, the raylet of the node running it is SIGKILLed
   (the node dies with its workers). The run must finish with the same result, and its log must name the
   candidate that was lost and retried (``ray: candidate 'drop layer L' of GLP step 2: worker lost ...,
   retried (attempt 2 of 4)``).
3. The head node killed (all its processes) during GLP step 2: the run stops (its exit status and last line are
   printed) with the finished candidates in the manifest; the same command with ``--executor local`` resumes
   it and must end with the local run's result (``--no-kill-head`` skips this).

One line per check; exit 1 on any difference. Everything it started (nodes, their workers, the glp-bench
runs) is killed at the end by process id, always, in bounded time; ``ray stop`` is not used (it would stop
every Ray instance of this machine). Timings are wall times on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Ray replaces 127.0.0.1 and localhost by the machine's network address; 127.0.0.2 is loopback too (Linux routes
# 127/8 to lo) and Ray keeps it. Token authentication with a token of this cluster's own (nodes, driver and
# checks share it; ~/.ray is left alone)
NODE_IP = "127.0.0.2"
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
KILL_STEP = 2  # the GLP step whose running candidate loses its node


def free_port() -> int:
    with socket.socket() as s:
        s.bind((NODE_IP, 0))
        return s.getsockname()[1]


def free_range(n: int) -> int:
    """The first port of ``n`` consecutive free ports (a worker port range of its own for each node)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind((NODE_IP, p))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(name, parent pid, session id) of a process, None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return name, int(fields[1]), int(fields[3])


def pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").split(" ")[0]
    except OSError:
        return ""


class Cluster:
    """Head and worker nodes on loopback (NODE_IP), each ``ray start --block`` in its own session (so every process of
    a node can be found by its session id) and its own temp dir."""

    def __init__(self, root: Path):
        self.root = root
        self.nodes: dict[str, subprocess.Popen] = {}
        self.address = None
        self.count = 0

    def _start(self, name: str, args: list[str]) -> None:
        ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]
        base = free_range(60)
        tmp = self.root / name
        tmp.mkdir()
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--node-ip-address", NODE_IP,
               "--temp-dir", str(tmp), "--disable-usage-stats", "--min-worker-port", str(base),
               "--max-worker-port", str(base + 59), *ports, *args]
        out = open(self.root / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        self.nodes[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, **RAY_ENV})

    def _started(self, name: str, timeout: float) -> bool:
        """Until ``ray start`` says the node runs (True) or exits (False: on a busy machine a raylet can miss
        Ray's fixed 30 s start-up window)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "Ray runtime started" in (self.root / f"{name}.log").read_text(errors="replace"):
                return True
            if self.nodes[name].poll() is not None:
                return False
            time.sleep(0.5)
        return False

    def _up(self, name: str, args: list[str], timeout: float, tries: int = 3) -> str:
        for i in range(1, tries + 1):
            node = name if i == 1 else f"{name}-try{i}"
            self._start(node, args)
            if self._started(node, timeout):
                return node
            self.stop([node])
            print(f"  ({node} did not start; see {self.root / node}.log)", flush=True)
        raise RuntimeError(f"{name} did not start in {tries} tries")

    def start_head(self, timeout: float = 180) -> None:
        port = free_port()
        self.address = f"{NODE_IP}:{port}"
        self._up("head", ["--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false",
                          "--ray-client-server-port", str(free_port())], timeout)

    def start_worker(self, timeout: float = 180) -> str:
        """One worker node at a time (starting several at once on 2 busy cores makes raylets time out)."""
        self.count += 1
        return self._up(f"worker-{self.count}", ["--address", self.address, "--num-cpus", "1"], timeout)

    def workers(self) -> list[str]:
        return [n for n, p in self.nodes.items() if n != "head" and p.poll() is None]

    def wait_ready(self, cpus: int, timeout: float) -> None:
        """Until the cluster has ``cpus`` CPUs on live nodes (a driver connected for the check only)."""
        code = ("import sys, time, ray\nray.init(address=sys.argv[1], log_to_driver=False, logging_level=40)\n"
                "end = time.time() + float(sys.argv[3])\n"
                "while time.time() < end:\n"
                "    cpus = sum(n['Resources'].get('CPU', 0) for n in ray.nodes() if n['Alive'])\n"
                "    if cpus >= int(sys.argv[2]): sys.exit(0)\n"
                "    time.sleep(0.5)\nsys.exit(1)\n")
        end = time.monotonic() + timeout
        while time.monotonic() < end:  # the GCS port first
            if any(p.poll() is not None for n, p in self.nodes.items() if n == "head"):
                raise RuntimeError(f"the head node exited; see {self.root / 'head.log'}")
            try:
                socket.create_connection((NODE_IP, int(self.address.rsplit(":", 1)[1])), timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        left = max(end - time.monotonic(), 1)
        proc = subprocess.run([sys.executable, "-c", code, self.address, str(cpus), str(left)], timeout=left + 60,
                              capture_output=True, text=True, env={**os.environ, **RAY_ENV})
        if proc.returncode != 0:
            raise RuntimeError(f"the cluster did not reach {cpus} CPUs in {timeout:.0f} s: {proc.stderr[-3000:]}")

    def raylet_of(self, node: str) -> int | None:
        sid = self.nodes[node].pid
        for pid in pids():
            st = proc_stat(pid)
            if st and st[0] == "raylet" and st[2] == sid:
                return pid
        return None

    def node_of(self, pid: int) -> str | None:
        """The node whose session holds ``pid`` or one of its ancestors."""
        sessions = {p.pid: name for name, p in self.nodes.items()}
        while pid > 1 and (st := proc_stat(pid)):
            if st[2] in sessions:
                return sessions[st[2]]
            pid = st[1]
        return None

    def stop(self, names: list[str] | None = None, timeout: float = 20.0) -> int:
        """SIGTERM the sessions of ``names`` (default: every node), then SIGKILL what is left; returns how many
        processes were left."""
        nodes = [p for n, p in self.nodes.items() if names is None or n in names]
        sessions = {p.pid for p in nodes}
        ours = [pid for pid in pids() if (st := proc_stat(pid)) and st[2] in sessions]
        for p in nodes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(proc_stat(pid) for pid in ours):
            for p in nodes:
                p.poll()
            time.sleep(0.5)
        left = [pid for pid in pids() if (st := proc_stat(pid)) and st[2] in sessions and st[0] != "<defunct>"]
        for pid in set(left) | {pid for pid in ours if proc_stat(pid)}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for p in nodes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return len(left)


class NodeKiller(threading.Thread):
    """When a candidate of GLP step ``KILL_STEP`` runs on a worker node, SIGKILL that node's raylet (once)."""

    def __init__(self, cluster: Cluster, head: bool = False):
        super().__init__(daemon=True)
        self.cluster, self.head, self.stop, self.killed = cluster, head, threading.Event(), None
        self.prefix = f"ray::glp-candidate-s{KILL_STEP}-l"

    def run(self):
        while not self.stop.is_set() and self.killed is None:
            for pid in pids():
                t = title(pid)
                node = self.cluster.node_of(pid) if t.startswith(self.prefix) else None
                if node and node != "head" and self.head:  # the whole head node: GCS, raylet and the rest
                    sid = self.cluster.nodes["head"].pid
                    for p in pids():
                        if (st := proc_stat(p)) and st[2] == sid:
                            os.kill(p, signal.SIGKILL)
                    self.killed = ("head", sid, int(t[len(self.prefix):]))
                    break
                if node and node != "head" and (raylet := self.cluster.raylet_of(node)):
                    os.kill(raylet, signal.SIGKILL)
                    self.killed = (node, raylet, int(t[len(self.prefix):]))
                    break
            time.sleep(0.02)


def prune(run_dir: Path, model: Path, data: Path, timeout: float, *extra: str, env: dict | None = None,
          unset: tuple[str, ...] = ()):
    """The real CLI (``env`` added to this environment, ``unset`` removed); returns (exit status, seconds, log)."""
    args = [sys.executable, "-m", "glp_bench.cli", "prune", "--task", "cola", "--model", str(model), "--data-dir",
            str(data), "--budget", "smoke", "--lr", "1e-3", "--search-epochs", "4", "--epochs", "4",
            "--strategy", "glp,top", "--min-depth", "4", "--run", str(run_dir), "--device", "cpu", *extra]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    t0 = time.monotonic()
    full = {**os.environ, **RAY_ENV, "PYTHONPATH": path, "COLUMNS": "200", **(env or {})}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={k: v for k, v in full.items() if k not in unset})
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out += f"\n(killed after {timeout:.0f} s)"
    (run_dir.parent / f"{run_dir.name}.log").write_text(out)
    return proc.returncode, time.monotonic() - t0, out


def results(run_dir: Path, digits: int | None) -> dict:
    """What a run computed (no timings): GLP steps with candidate scores, removal orders, models' dev scores and
    file hashes; floats rounded to ``digits`` (None: exact)."""
    m = json.loads((run_dir / "manifest.json").read_text())

    def r(x):
        if isinstance(x, float) and digits is not None:
            return round(x, digits)
        if isinstance(x, dict):
            return {k: r(v) for k, v in x.items()}
        if isinstance(x, list):
            return [r(v) for v in x]
        return x

    steps = [{"removed": s["removed"], "chosen": s["chosen"],
              "candidates": {k: {f: v[f] for f in ("score", "loss", "metrics")} for k, v in s["candidates"].items()}}
             for s in m["strategies"]["glp"]["steps"]]
    models = {n: {k: rec[k] for k in ("kept_layers", "dev_scores", "files")} for n, rec in m["models"].items()}
    orders = {s: rec["order"] for s, rec in m["strategies"].items()}
    return r({"steps": steps, "orders": orders, "models": models})


def compare(name: str, got: Path, ref: Path) -> bool:
    same6, exact = results(got, 6) == results(ref, 6), results(got, None) == results(ref, None)
    orders = results(got, 6)["orders"]
    print(f"{name}: {'same' if same6 else 'DIFFERENT'} layers and scores to 6 digits as the local run "
          f"(bit-identical: {'yes' if exact else 'no'}; orders {orders})", flush=True)
    return same6


def kill_head(cluster: Cluster, root: Path, model: Path, data: Path, timeout: float) -> bool:
    """SIGKILL the whole head node during GLP step 2: the run stops; the same command with the local executor
    resumes it and ends with the local run's result."""
    killer = NodeKiller(cluster, head=True)
    killer.start()
    run_dir = root / "head-killed"
    code, secs, out = prune(run_dir, model, data, min(timeout, 300), "--executor", "ray", "--ray-address",
                            cluster.address)
    killer.stop.set()
    killer.join()
    if killer.killed is None:
        print("head killed: FAILED: no candidate of GLP step 2 was seen running")
        return False
    last = [line for line in out.splitlines() if line.strip()][-1][:300]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    kept = sum(len(s["candidates"]) for s in manifest["strategies"]["glp"]["steps"])
    print(f"head killed during candidate 'drop layer {killer.killed[2]}' of GLP step {KILL_STEP}: the run stopped, "
          f"exit {code} after {secs:.0f} s (last line: {last}); {kept} candidate(s) kept in the manifest", flush=True)
    code, secs, out = prune(run_dir, model, data, timeout, env={"OMP_NUM_THREADS": "1"})
    done = re.search(r"\((\d+) done\)", " ".join(out.split()))
    same = code == 0 and compare("head killed, resumed with --executor local", run_dir, root / "local")
    print(f"head killed, resumed: {'OK' if same and code == 0 else 'FAILED'}: exit {code}, {secs:.0f} s, resumed "
          f"with {done.group(1) if done else '?'} candidate(s) done", flush=True)
    return same


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3, help="killed-node runs (default 3)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per glp-bench run (default 900)")
    ap.add_argument("--no-kill-head", dest="kill_head", action="store_false",
                    help="skip the last check (the head node killed mid-run, then resumed locally)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (runs, logs, node temp dirs)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tests.conftest import build_tiny_model, write_cola

    root = Path(tempfile.mkdtemp(prefix="glpc-", dir="/tmp"))  # short: Ray's socket paths live under it
    ok = True
    cluster = Cluster(root)
    try:
        model = build_tiny_model("bert", root / "bert6", layers=6)
        data = write_cola(root / "CoLA", n_train=384, n_dev=64)
        code, secs, out = prune(root / "local", model, data, args.timeout, env={"OMP_NUM_THREADS": "1"})
        print(f"local run (torch 1 thread): exit {code}, {secs:.0f} s", flush=True)
        if code != 0:
            print(out[-2000:])
            return 1

        t0 = time.monotonic()
        cluster.start_head()
        cluster.start_worker()
        cluster.start_worker()
        cluster.wait_ready(2, 240)
        print(f"cluster: head (0 CPUs) + 2 worker nodes (1 CPU each) at {cluster.address}, up in "
              f"{time.monotonic() - t0:.0f} s", flush=True)

        code, secs, out = prune(root / "no-token", model, data, 300, "--executor", "ray", env={
            "RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "disabled"}, unset=("RAY_AUTH_TOKEN",))
        errors = [line for line in out.splitlines() if line.startswith("glp-bench: error:")]
        good = code == 2 and len(errors) == 1 and "token" in errors[0] and "Traceback" not in out
        ok &= good
        print(f"driver without the cluster's token (RAY_ADDRESS set): {'OK' if good else 'FAILED'}: exit {code} in "
              f"{secs:.0f} s, "
              f"{errors[0] if errors else out[-500:]}", flush=True)

        code, secs, out = prune(root / "ray", model, data, args.timeout, "--executor", "ray", "--ray-address",
                                cluster.address)
        print(f"ray run on the cluster: exit {code}, {secs:.0f} s", flush=True)
        if code != 0:
            print(out[-2000:])
            return 1
        ok &= compare("ray run vs local", root / "ray", root / "local")

        passed = 0
        for trial in range(1, args.trials + 1):
            while len(cluster.workers()) < 2:
                cluster.start_worker()
            cluster.wait_ready(2, 240)
            killer = NodeKiller(cluster)
            killer.start()
            run_dir = root / f"killed-{trial}"
            code, secs, out = prune(run_dir, model, data, args.timeout, "--executor", "ray", "--ray-address",
                                    cluster.address)
            killer.stop.set()
            killer.join()
            retried = re.findall(r"ray: candidate 'drop layer (\d+)' of GLP step (\d+): worker lost \((\w+)\), "
                                 r"retried \(attempt (\d+) of (\d+)\)", out)
            if killer.killed is None:
                print(f"trial {trial}: FAILED: no candidate of GLP step {KILL_STEP} was seen running on a worker node")
                ok = False
                continue
            node, raylet, layer = killer.killed
            said = [f"'drop layer {c}' of step {s}: {why}, attempt {a} of {n}" for c, s, why, a, n in retried]
            named = (str(layer), str(KILL_STEP)) in {(c, s) for c, s, *_ in retried}
            same = code == 0 and compare(f"trial {trial} (killed node)", run_dir, root / "local")
            good = code == 0 and named and same
            passed += good
            print(f"trial {trial}: {'OK' if good else 'FAILED'}: killed {node} (raylet pid {raylet}) while it ran "
                  f"candidate 'drop layer {layer}' of GLP step {KILL_STEP}; exit {code}, {secs:.0f} s; the log "
                  f"names the retried candidate: {'yes' if named else 'NO'} ({'; '.join(said) or 'no retry line'})",
                  flush=True)
            if code != 0:
                print(out[-2000:])
            ok &= good
        print(f"killed-node runs identical to the local run: {passed} of {args.trials}", flush=True)
        if args.kill_head:
            ok &= kill_head(cluster, root, model, data, args.timeout)
    finally:
        left = cluster.stop()
        print(f"clean-up: stopped {len(cluster.nodes)} node(s) ({left} process(es) needed SIGKILL)", flush=True)
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
