"""Served-load benchmark (issue 27 item 3): an open-loop load generator against ``glp-runtime serve`` on
127.0.0.1, for the standalone server and Ray Serve with 1 and 2 replicas, then one replica of 2 killed
under load. Prints a table and writes versioned JSON.

    python benchmarks/bench_serve.py BUNDLE                      # 1000 requests, 50 clients, 200 req/s
    python benchmarks/bench_serve.py BUNDLE --requests 200 --rate 50 --modes standalone,ray1,ray2,kill --json r.json

Open loop: request i is due at ``i / --rate`` seconds whatever the server does, and its latency counts from
that moment, so a slow server's queueing shows in p50/p99 instead of slowing the generator (no coordinated
omission). ``--clients`` threads send the due requests (one connection each, ``http.client``: the
standard library keeps the benchmark free of a load-testing dependency, and a thread per client is plenty
at these rates); to compare throughputs, offer more than the server can answer (a ``--rate`` above its
capacity: throughput is then the capacity). A request not sent within ``--time-limit`` seconds is counted, never waited for. Every
request carries one real sentence of the bundle's task: CoLA dev sentences (glp_bench/data/bundled/cola)
for a cola bundle, else ``--texts FILE`` (one per line).

Per mode: throughput (answered requests per second of the phase), p50/p99 end-to-end latency, errors
(non-2xx and failed connections, by kind), and the server's resident memory before and after the load
(after a warm-up; /proc: the server process, or Serve's replica and proxy processes), and the CPU milliseconds
each of those processes (and the load generator) spent per answered request, which says what bounds the throughput. ``kill``: with
2 replicas under load, one replica process is SIGKILLed after a third of the schedule; the failures are
counted, and the benchmark waits for Serve to bring the replica back (the row's RSS after is then taken). Targets (issue 27) are printed
with PASS/FAIL; exit 1 when the standalone server's (0 errors, RSS within 20%) fail.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLA_DEV = REPO / "glp_bench" / "data" / "bundled" / "cola" / "dev.tsv"
FORMAT, VERSION = "glp-bench-serve-bench", 1
MODES = ("standalone", "ray1", "ray2", "kill")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the servers ---------------------------------------------------------------------------------------
def runtime_env() -> dict:
    path = os.pathsep.join([str(REPO / "deploy" / "runtime"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


class Server:
    """``glp-runtime serve BUNDLE [--ray --replicas N]`` in a subprocess on a free loopback port."""

    def __init__(self, bundle: Path, replicas: int = 0, extra: tuple[str, ...] = (), timeout: float = 300):
        ray = ("--ray", "--replicas", str(replicas)) if replicas else ()
        self.replicas = replicas
        self.proc = subprocess.Popen([sys.executable, "-m", "glp_runtime", "serve", str(bundle), "--host", "127.0.0.1",
                                      "--port", "0", *ray, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=runtime_env(), text=True)
        deadline, line = time.monotonic() + timeout, ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline()
            if "serving" in line:
                break
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise SystemExit(f"bench_serve: the server did not start ({line!r})")
        self.port = int(m.group(1))

    def pids(self) -> list[int]:
        """The processes that hold the model: the server, or Serve's replicas and its HTTP proxy."""
        if not self.replicas:
            return [self.proc.pid]
        return replica_pids() + proxy_pids()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _procs(pattern: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if re.search(pattern, cmd):
                out.append(int(d.name))
    return sorted(out)


def replica_pids() -> list[int]:
    return _procs(r"^ray::ServeReplica:glp-runtime:Classifier")


def proxy_pids() -> list[int]:
    return _procs(r"^ray::ProxyActor")


def rss_mb(pids: list[int]) -> float | None:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            return None
    return round(total / 1024, 1) if pids else None


# --- the load ------------------------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds the processes have used (/proc/PID/stat)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])
    return total / tick


def roles(server: Server) -> dict[str, list[int]]:
    """The serving processes by role, for the CPU each spends per request."""
    if not server.replicas:
        return {"server": [server.proc.pid]}
    return {"proxy": proxy_pids(), "replicas": replica_pids()}


def post(port: int, text: str, timeout: float) -> str:
    """'ok' or the kind of failure of one POST /predict."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = json.dumps({"text": text})
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            return f"HTTP {resp.status}"
        return "ok" if b'"predictions"' in data else "bad answer"
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        conn.close()


def load(port: int, texts: list[str], n: int, rate: float, clients: int, time_limit: float,
         at_fraction=None, request_timeout: float = 30.0) -> dict:
    """Send ``n`` requests open-loop at ``rate``/s from ``clients`` threads; ``at_fraction=(f, fn)`` calls
    ``fn()`` once a fraction f of the schedule has passed (the kill trial)."""
    start = time.perf_counter() + 0.1
    due = [start + i / rate for i in range(n)]
    todo: queue.Queue[int] = queue.Queue()
    for i in range(n):
        todo.put(i)
    results: list[tuple[str, float] | None] = [None] * n
    ends: list[float] = []
    lock = threading.Lock()
    flying = [0]  # requests sent and not yet answered

    def client():
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            wait = due[i] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if time.perf_counter() - start > time_limit:
                results[i] = ("not sent (time limit)", 0.0)
                continue
            with lock:
                flying[0] += 1
            kind = post(port, texts[i % len(texts)], request_timeout)
            t = time.perf_counter()
            results[i] = (kind, t - due[i])
            with lock:
                ends.append(t)
                flying[0] -= 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    in_flight = None
    if at_fraction:
        frac, fn = at_fraction
        time.sleep(max(0.0, start + frac * n / rate - time.perf_counter()))
        in_flight = flying[0]
        fn()
    for t in threads:
        t.join(timeout=time_limit + request_timeout + 30)
    done = [r for r in results if r is not None]
    ok = sorted(lat for kind, lat in done if kind == "ok")
    errors: dict[str, int] = {}
    for kind, _ in done:
        if kind != "ok":
            errors[kind] = errors.get(kind, 0) + 1
    wall = (max(ends) - start) if ends else 0.0

    def pct(q: float) -> float | None:
        return round(1000 * ok[min(len(ok) - 1, int(q * len(ok)))], 2) if ok else None

    return {"requests": n, "ok": len(ok), "errors": sum(errors.values()), "error_kinds": errors,
            "throughput_rps": round(len(ok) / wall, 1) if wall > 0 else None, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "wall_s": round(wall, 2), "in_flight_at_call": in_flight}


def sentences(bundle: Path, texts_file: Path | None, seed: int) -> list[str]:
    if texts_file:
        out = [x.strip() for x in texts_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    else:
        task = json.loads((bundle / "runtime.json").read_text())["task"]["name"]
        if task != "cola":
            raise SystemExit(f"bench_serve: error: only CoLA sentences are bundled and this bundle is {task}; "
                             "pass --texts FILE (one input per line)")
        out = [r.split("\t")[3] for r in COLA_DEV.read_text(encoding="utf-8").splitlines() if r.count("\t") >= 3]
    if not out:
        raise SystemExit("bench_serve: error: no texts to send")
    random.Random(seed).shuffle(out)
    return out


def measure(server: Server, texts: list[str], args, name: str, at_fraction=None) -> dict:
    for t in texts[:args.warmup]:  # warm-up: sessions, batch shapes, allocator
        post(server.port, t, 30)
    before = rss_mb(server.pids())
    procs = roles(server)
    cpu0 = {k: cpu_seconds(v) for k, v in procs.items()}
    own0 = time.process_time()
    log(f"{name}: {args.requests} requests at {args.rate:g}/s from {args.clients} clients")
    r = load(server.port, texts, args.requests, args.rate, args.clients, args.time_limit, at_fraction)
    after = rss_mb(server.pids())
    change = round(100 * (after - before) / before, 1) if before and after else None
    cpu = {k: cpu_seconds(v) for k, v in procs.items()}
    cpu["client"], cpu0["client"] = time.process_time(), own0
    per_req = {k: round(1000 * (cpu[k] - cpu0[k]) / r["ok"], 2) if r["ok"] and cpu[k] is not None
               and cpu0[k] is not None else None for k in cpu}
    return {"mode": name, "replicas": server.replicas, **r, "rss_before_mb": before, "rss_after_mb": after,
            "rss_change_pct": change, "cpu_ms_per_request": per_req}


def kill_trial(server: Server, texts: list[str], args) -> dict:
    killed: dict = {}

    def kill_one():
        pids = replica_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.update(pid=pids[0], at_s=round(time.perf_counter(), 3))
            log(f"kill: SIGKILL replica process {pids[0]}")

    r = measure(server, texts, args, "ray2+kill", at_fraction=(1 / 3, kill_one))
    deadline, back = time.monotonic() + 120, False
    while time.monotonic() < deadline:  # Serve starts a new replica in its place
        pids = replica_pids()
        if len(pids) >= 2 and killed.get("pid") not in pids:
            back = True
            break
        time.sleep(1)
    r["killed_pid"] = killed.get("pid")
    r["replica_restarted"] = back
    if back:  # the memory of the serving processes once the replacement is up
        r["rss_after_mb"] = rss_mb(server.pids())
        r["rss_change_pct"] = round(100 * (r["rss_after_mb"] - r["rss_before_mb"]) / r["rss_before_mb"], 1)
    return r


def table(rows: list[dict]) -> str:
    head = f"{'mode':<11} {'ok':>6} {'err':>5} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'RSS MB before>after':>21}"
    lines = [head, "-" * len(head)]
    for r in rows:
        rss = f"{r['rss_before_mb']}>{r['rss_after_mb']} ({r['rss_change_pct']:+}%)" if r["rss_change_pct"] is not None else "-"
        lines.append(f"{r['mode']:<11} {r['ok']:>6} {r['errors']:>5} {r['throughput_rps'] or 0:>8} "
                     f"{r['p50_ms'] or 0:>9} {r['p99_ms'] or 0:>9} {rss:>21}")
    lines.append("CPU ms per answered request, by process (the machine's cores are shared by all of them):")
    for r in rows:
        lines.append(f"  {r['mode']:<11} " + ", ".join(f"{k} {v}" for k, v in (r.get("cpu_ms_per_request") or {}).items()))
    return "\n".join(lines)


def checks(rows: dict[str, dict]) -> list[tuple[str, bool, bool]]:
    """(target, met, binding): binding targets set the exit status."""
    out = []
    s = rows.get("standalone")
    if s:
        out.append((f"standalone: 0 errors in {s['requests']} requests (got {s['errors']})", s["errors"] == 0, True))
        ch = s["rss_change_pct"]
        out.append((f"standalone: RSS before/after within 20% (got {ch}%)", ch is not None and abs(ch) <= 20, True))
    r1, r2 = rows.get("ray1"), rows.get("ray2")
    if r1 and r2 and r1["throughput_rps"] and r2["throughput_rps"]:
        ratio = r2["throughput_rps"] / r1["throughput_rps"]
        out.append((f"ray: 2 replicas >= 1.6x the throughput of 1 (got {ratio:.2f}x)", ratio >= 1.6, False))
        if r1["p99_ms"] and r2["p99_ms"]:
            out.append((f"ray: 2 replicas' p99 <= 2x 1 replica's (got {r2['p99_ms'] / r1['p99_ms']:.2f}x)",
                        r2["p99_ms"] <= 2 * r1["p99_ms"], False))
    for name in ("ray1", "ray2"):
        if rows.get(name):
            out.append((f"{name}: 0 non-2xx under good load (got {rows[name]['errors']})", rows[name]["errors"] == 0, False))
    k = rows.get("ray2+kill")
    if k:
        out.append((f"kill: the replica was restarted ({k['replica_restarted']}); failed requests {k['errors']} "
                    f"of {k['requests']}", bool(k["replica_restarted"]), False))
        flying = k.get("in_flight_at_call")
        out.append((f"kill: failed requests <= requests in flight at the kill, both replicas' (got {k['errors']} "
                    f"<= {flying})", flying is not None and k["errors"] <= flying, False))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="a bundle folder written by 'glp-bench deploy'")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default all)")
    p.add_argument("--requests", type=int, default=1000, help="requests per mode (default 1000)")
    p.add_argument("--clients", type=int, default=50, help="client threads (default 50)")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second offered (default 200)")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per mode after which no request is sent")
    p.add_argument("--warmup", type=int, default=20, help="requests before measuring (default 20)")
    p.add_argument("--texts", type=Path, default=None, help="one input per line (default: CoLA dev for cola bundles)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the results here (versioned JSON)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import results_file

    results_file.check(p, args.json, "--json", FORMAT)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or args.requests < 1 or args.clients < 1 or args.rate <= 0 or args.time_limit <= 0:
        p.error(f"unknown mode(s) {bad}" if bad else "--requests, --clients, --rate and --time-limit must be positive")
    if not (args.bundle / "bundle.json").is_file():
        p.error(f"{args.bundle} is not a bundle (no bundle.json)")
    texts = sentences(args.bundle, args.texts, args.seed)

    rows: dict[str, dict] = {}
    if "standalone" in modes:
        server = Server(args.bundle)
        try:
            rows["standalone"] = measure(server, texts, args, "standalone")
        finally:
            server.stop()
    if "ray1" in modes:
        server = Server(args.bundle, replicas=1)
        try:
            rows["ray1"] = measure(server, texts, args, "ray1")
        finally:
            server.stop()
    if "ray2" in modes or "kill" in modes:
        server = Server(args.bundle, replicas=2)
        try:
            if "ray2" in modes:
                rows["ray2"] = measure(server, texts, args, "ray2")
            if "kill" in modes:
                rows["ray2+kill"] = kill_trial(server, texts, args)
        finally:
            server.stop()

    print(table(list(rows.values())))
    results = checks(rows)
    for text, met, binding in results:
        print(f"{'PASS' if met else 'FAIL'}{'' if binding else ' (reported)'}  {text}")
    if args.json:
        summary = json.loads((args.bundle / "bundle.json").read_text())
        results_file.write(args.json, FORMAT, VERSION, {
            "bundle": {"path": str(args.bundle), "model": summary.get("model"), "target": summary.get("target")},
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "client": "threads + http.client (standard library), open loop, one connection per request",
            "results": list(rows.values()),
            "checks": [{"target": t, "met": m, "binding": b} for t, m, b in results],
        })
    return 1 if any(b and not m for _, m, b in results) else 0


if __name__ == "__main__":
    sys.exit(main())
