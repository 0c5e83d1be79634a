"""``python -m glp_runtime serve BUNDLE``: a small HTTP server (standard library only) with batching.

Endpoints (JSON in, JSON out)::

    GET  /health    {"status": "ok", "task", "model": {...}, "uptime_s", "stats": {requests, inputs,
                     batches, largest_batch, errors}}
    GET  /info      the bundle's summary: labels, text keys, max length, expected dev score, latency
    POST /predict   body: one input ({"text": "..."}, {"sentence1": ..., "sentence2": ...}, "...", [a, b])
                    or {"inputs": [input, ...]} (forms as in glp_runtime.inputs)
                    -> {"predictions": [{"label", "label_id", "scores", "truncated"}, ...]} in input order

Bad requests get a 4xx status and ``{"error": "..."}``, and the server keeps serving: 400 malformed
request line (or HTTP/0.9), malformed JSON, JSON nested deeper than ``MAX_DEPTH`` levels, undecodable
body, text that is not valid Unicode (a lone surrogate such as ``"\ud800"``), wrong or empty fields;
404 unknown path; 405 wrong method (PUT, DELETE, PATCH, HEAD, OPTIONS, ... on any path, POST on
/health or /info, GET on /predict); 411 no Content-Length; 413 body over ``--max-body-bytes`` or more
than ``--max-inputs`` inputs. A failure inside the model answers 500 for the requests of that batch only.

Batching: request threads hand their inputs to one batcher thread, which takes every request already
waiting (and waits at most ``--max-wait-ms`` for more, up to ``--max-batch`` inputs), runs them as one
call and hands each request its own results. Under load, requests that arrive while the model is busy
are served together in the next call. Joining requests never changes a result: a bundle whose variant is
not batch-invariant (int8, dynamically quantized) runs each input alone (``Classifier.batch_invariant``).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .bundle import InputError

DEFAULT_MAX_BODY = 1 << 20  # bytes
DEFAULT_MAX_INPUTS = 256
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT_MS = 2.0
DRAIN_LIMIT = 16 << 20  # an oversized body up to this size is read and dropped so the client sees the 413
REQUEST_TIMEOUT_S = 60.0
SOCKET_TIMEOUT_S = 30.0
MAX_DEPTH = 32  # JSON nesting accepted in a body (inputs need 3: {"inputs": [[a, b]]})
REFUSED_METHODS = ("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    items: list[tuple[str, ...]]
    future: Future = field(default_factory=Future)


class Batcher:
    """One thread that runs the classifier on the inputs of every waiting request at once."""

    def __init__(self, classifier, max_batch: int = DEFAULT_MAX_BATCH, max_wait_ms: float = DEFAULT_MAX_WAIT_MS):
        self.classifier = classifier
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "inputs": 0, "batches": 0, "largest_batch": 0, "errors": 0}
        self.thread = threading.Thread(target=self._loop, name="glp-runtime-batcher", daemon=True)
        self.thread.start()

    def submit(self, items: list[tuple[str, ...]]) -> Future:
        job = Job(items)
        self.queue.put(job)
        return job.future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=5)

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        jobs, n, stop = [first], len(first.items), False
        deadline = time.monotonic() + self.max_wait
        while n < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                stop = True
                break
            jobs.append(job)
            n += len(job.items)
        return jobs, stop

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            items = [x for j in jobs for x in j.items]
            try:
                preds = self.classifier.predict(items)
            except Exception as e:  # noqa: BLE001 - reported to the waiting requests, the server goes on
                with self.lock:
                    self.stats["errors"] += len(jobs)
                for j in jobs:
                    j.future.set_exception(e)
            else:
                with self.lock:
                    self.stats["requests"] += len(jobs)
                    self.stats["inputs"] += len(items)
                    self.stats["batches"] += 1
                    self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
                start = 0
                for j in jobs:
                    j.future.set_result(preds[start:start + len(j.items)])
                    start += len(j.items)
            if stop:
                return

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.stats)


def nesting_depth(obj: object) -> int:
    """How deeply lists and objects nest in ``obj`` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def decode_body(body: bytes) -> object:
    """The JSON of a request body (RequestError 400 for undecodable, malformed or too deeply nested JSON)."""
    too_deep = f"the JSON is nested deeper than {MAX_DEPTH} levels; send {{\"inputs\": [...]}} of texts"
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise RequestError(400, too_deep) from None
    if nesting_depth(obj) > MAX_DEPTH:
        raise RequestError(400, too_deep)
    return obj


def parse_request(obj: object, classifier, max_inputs: int) -> list[tuple[str, ...]]:
    """The inputs of a /predict body (RequestError 400/413 naming what is wrong)."""
    if isinstance(obj, dict) and "inputs" in obj:
        items = obj["inputs"]
        if not isinstance(items, list):
            raise RequestError(400, f'"inputs" must be a list, got {type(items).__name__}')
        if not items:
            raise RequestError(400, '"inputs" is empty; send at least one input')
        if len(items) > max_inputs:
            raise RequestError(413, f"{len(items)} inputs in one request; the limit is {max_inputs} (--max-inputs)")
        out = []
        for i, item in enumerate(items):
            try:
                out.append(classifier.normalize(item))
            except InputError as e:
                raise RequestError(400, f"inputs[{i}]: {e}") from None
        return out
    try:
        return [classifier.normalize(obj)]
    except InputError as e:
        raise RequestError(400, str(e)) from None


class App:
    """What the handlers share: the classifier, the batcher and the limits."""

    def __init__(self, classifier, max_batch=DEFAULT_MAX_BATCH, max_wait_ms=DEFAULT_MAX_WAIT_MS,
                 max_body_bytes=DEFAULT_MAX_BODY, max_inputs=DEFAULT_MAX_INPUTS, access_log=False):
        self.classifier = classifier
        self.batcher = Batcher(classifier, max_batch, max_wait_ms)
        self.max_body = int(max_body_bytes)
        self.max_inputs = int(max_inputs)
        self.access_log = access_log
        self.started = time.monotonic()
        self.summary = classifier.bundle.summary()

    def health(self) -> dict:
        m = self.summary["model"]
        return {"status": "ok", "task": self.summary["task"], "provider": self.classifier.provider,
                "model": {k: m.get(k) for k in ("name", "depth", "original_depth", "variant") if k in m},
                "uptime_s": round(time.monotonic() - self.started, 3), "stats": self.batcher.snapshot()}


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "glp-runtime"
        timeout = SOCKET_TIMEOUT_S  # a client that stalls mid-request is dropped, not waited for

        def log_message(self, fmt, *args):  # noqa: A003 - BaseHTTPRequestHandler's name
            if app.access_log:
                sys.stderr.write(f"{self.address_string()} - {fmt % args}\n")

        def _send(self, status: int, obj: dict, allow: str | None = None) -> None:
            body = json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace")  # lone surrogates
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if allow:
                self.send_header("Allow", allow)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": message})

        def send_error(self, code, message=None, explain=None):
            """Protocol-level errors (bad request line, unsupported method, ...) as JSON too, always with a
            status line (a garbage request line leaves the handler in HTTP/0.9 mode, which has none)."""
            self.close_connection = True
            if self.request_version == "HTTP/0.9":
                self.request_version = "HTTP/1.0"
            try:
                self._error(code, message or f"{code} {HTTPStatus(code).phrase}")
            except (OSError, ValueError):
                pass

        def parse_request(self):
            if not super().parse_request():
                return False
            if self.request_version == "HTTP/0.9":  # "GET /health" without a version: answer in HTTP/1.0
                self.send_error(400, "HTTP/0.9 requests are not served; send an HTTP/1.0 or HTTP/1.1 request line")
                return False
            return True

        def refuse_method(self):
            self.close_connection = True
            self._send(405, {"error": f"{self.command} is not served; use GET /health, GET /info or POST /predict"},
                       allow="GET, POST")

        def do_GET(self):  # noqa: N802 - BaseHTTPRequestHandler's name
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, app.health())
            elif path == "/info":
                self._send(200, app.summary)
            elif path == "/predict":
                self._error(405, "use POST /predict with a JSON body")
            else:
                self._error(404, f"no such endpoint {path!r}; use GET /health, GET /info or POST /predict")

        def do_POST(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path != "/predict":
                self.close_connection = True
                status = 405 if path in ("/health", "/info") else 404
                self._error(status, f"POST {path} is not served; use POST /predict")
                return
            try:
                obj = decode_body(self._read_body())
                items = parse_request(obj, app.classifier, app.max_inputs)
                try:
                    preds = app.batcher.submit(items).result(timeout=REQUEST_TIMEOUT_S)
                except FutureTimeout:
                    raise RequestError(503, f"the model did not answer within {REQUEST_TIMEOUT_S:.0f} s; retry later") from None
                self._send(200, {"predictions": preds})
            except RequestError as e:
                self._error(e.status, str(e))
            except (TimeoutError, ConnectionError):
                self.close_connection = True
            except Exception as e:  # noqa: BLE001 - one failed request must not stop the server
                self._error(500, f"internal error: {type(e).__name__}: {e}")

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True
                raise RequestError(411, "chunked bodies are not supported; send a Content-Length")
            length = self.headers.get("Content-Length")
            if length is None:
                self.close_connection = True
                raise RequestError(411, "a Content-Length header is required")
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise RequestError(400, f"bad Content-Length {length!r}") from None
            if n > app.max_body:
                self.close_connection = True
                if n <= DRAIN_LIMIT:  # read and drop it, so the client gets to read our answer
                    left = n
                    while left > 0:
                        got = self.rfile.read(min(left, 1 << 16))
                        if not got:
                            break
                        left -= len(got)
                raise RequestError(413, f"the body has {n} bytes; the limit is {app.max_body} (--max-body-bytes)")
            if n == 0:
                raise RequestError(400, "the body is empty; send a JSON input")
            body = self.rfile.read(n)
            if len(body) < n:
                self.close_connection = True
                raise RequestError(400, f"the body ended after {len(body)} of {n} bytes")
            return body

    for method in REFUSED_METHODS:
        setattr(Handler, f"do_{method}", Handler.refuse_method)
    return Handler


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # connections waiting to be accepted (the default 5 drops bursts)
    daemon_threads = True

    def __init__(self, address, app: App):
        self.app = app
        super().__init__(address, make_handler(app))


def make_server(classifier, host: str = "127.0.0.1", port: int = 8000, **limits) -> Server:
    """A bound (not yet serving) server; ``server.app`` holds the batcher. ``port=0``: a free port."""
    return Server((host, port), App(classifier, **limits))


def main(args) -> int:
    from .classifier import Classifier

    clf = Classifier.load(args.bundle, provider=args.provider, threads=args.threads, batch_size=args.batch_size)
    try:
        server = make_server(clf, args.host, args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             max_body_bytes=args.max_body_bytes, max_inputs=args.max_inputs,
                             access_log=args.access_log)
    except OSError as e:
        print(f"glp-runtime: error: cannot listen on {args.host}:{args.port} ({e.strerror}); "
              "pick another --port", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    s = clf.bundle.summary()
    m = s["model"]
    print(f"glp-runtime: serving {s['task']} ({m.get('name')}, depth {m.get('depth')}, {m.get('variant')}, "
          f"{clf.provider}) on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.app.batcher.close()
    return 0

