"""``python -m glp_runtime serve BUNDLE``: a small HTTP server (standard library only) with batching.

Endpoints (JSON in, JSON out)::

    GET  /health    {"status": "ok", "task", "model": {...}, "uptime_s", "stats": {requests, inputs,
                     batches, largest_batch, errors}}
    GET  /info      the bundle's summary: labels, text keys, max length, expected dev score, latency
    POST /predict   body: one input ({"text": "..."}, {"sentence1": ..., "sentence2": ...}, "...", [a, b])
                    or {"inputs": [input, ...]} (forms as in glp_runtime.inputs)
                    -> {"predictions": [{"label", "label_id", "scores", "truncated"}, ...]} in input order

Bad requests get a 4xx status and ``{"error": "..."}``, and the server keeps serving. The checks and their
messages live in ``glp_runtime.api``, shared with the Ray Serve deployment: 400 malformed request line (or
HTTP/0.9), malformed JSON, JSON nested deeper than ``api.MAX_DEPTH`` levels, undecodable body, text that is
not valid Unicode (a lone surrogate such as ``"\ud800"``), wrong or empty fields; 404 unknown path; 405 wrong
method (PUT, DELETE, PATCH, HEAD, OPTIONS, ... on any path, POST on /health or /info, GET on /predict); 411
no Content-Length; 413 body over ``--max-body-bytes`` or more than ``--max-inputs`` inputs; 415 a POST that
is not ``Content-Type: application/json``; 421 a Host header that does not name this server (``--allowed-host``);
503 more than ``--max-pending`` requests in progress (with ``Retry-After: 1``). A failure inside the model
answers 500 for the requests of that batch only. A client that disconnects is dropped without a traceback.

Batching: request threads hand their inputs to one batcher thread, which takes every request already
waiting (and waits at most ``--max-wait-ms`` for more, up to ``--max-batch`` inputs), runs them as one
call and hands each request its own results. Under load, requests that arrive while the model is busy
are served together in the next call. Joining requests never changes a result: a bundle whose variant is
not batch-invariant (int8, dynamically quantized) runs each input alone (``Classifier.batch_invariant``).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import api
from .api import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_INPUTS,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_WAIT_MS,
    RequestError,
)

DRAIN_LIMIT = 16 << 20  # an oversized body up to this size is read and dropped so the client sees the 413
REQUEST_TIMEOUT_S = 60.0
SOCKET_TIMEOUT_S = 30.0
REFUSED_METHODS = ("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")


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


class App:
    """What the handlers share: the classifier, the batcher, the limits and the Host check."""

    def __init__(self, classifier, max_batch=DEFAULT_MAX_BATCH, max_wait_ms=DEFAULT_MAX_WAIT_MS,
                 max_body_bytes=DEFAULT_MAX_BODY, max_inputs=DEFAULT_MAX_INPUTS, max_pending=DEFAULT_MAX_PENDING,
                 access_log=False, allowed_hosts=()):
        self.classifier = classifier
        self.batcher = Batcher(classifier, max_batch, max_wait_ms)
        self.max_body = int(max_body_bytes)
        self.max_inputs = int(max_inputs)
        self.max_pending = int(max_pending)
        self.pending = threading.BoundedSemaphore(self.max_pending)
        self.access_log = access_log
        self.allowed_hosts = list(allowed_hosts)
        self.hosts: api.HostCheck | None = None  # set once the port is bound
        self.started = time.monotonic()
        self.summary = classifier.bundle.summary()

    def health(self) -> dict:
        return api.health(self.summary, self.classifier.provider, time.monotonic() - self.started,
                          self.batcher.snapshot())


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "glp-runtime"
        timeout = SOCKET_TIMEOUT_S  # a client that stalls mid-request is dropped, not waited for

        def log_message(self, fmt, *args):  # noqa: A003 - BaseHTTPRequestHandler's name
            if app.access_log:
                sys.stderr.write(f"{self.address_string()} - {fmt % args}\n")

        def _send(self, status: int, obj: dict, allow: str | None = None) -> None:
            body = api.encode(obj)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if status == 503:
                self.send_header("Retry-After", "1")
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
            self._drain_body()
            try:
                api.check_route(self.command, self.path.split("?", 1)[0])
            except RequestError as e:
                self._send(e.status, {"error": str(e)}, allow=api.ALLOW)

        def _drain_body(self, limit: int = DRAIN_LIMIT) -> None:
            """Read and drop a body of up to ``limit`` bytes before an early answer: closing a socket with
            unread data resets it, and the client would lose the answer."""
            try:
                left = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return
            if left > limit:
                return
            while left > 0:
                got = self.rfile.read(min(left, 1 << 16))
                if not got:
                    break
                left -= len(got)

        def _route(self) -> str:
            """The path, after the route and Host checks (RequestError otherwise)."""
            path = self.path.split("?", 1)[0]
            api.check_route(self.command, path)
            app.hosts.check(self.headers.get("Host"), http11=self.request_version == "HTTP/1.1")
            return path

        def do_GET(self):  # noqa: N802 - BaseHTTPRequestHandler's name
            try:
                path = self._route()
            except RequestError as e:
                self._error(e.status, str(e))
                return
            self._send(200, app.health() if path == "/health" else app.summary)

        def do_POST(self):  # noqa: N802
            try:
                self._route()
            except RequestError as e:
                self.close_connection = True
                self._drain_body(app.max_body)
                self._error(e.status, str(e))
                return
            if not app.pending.acquire(blocking=False):
                self.close_connection = True
                self._drain_body(app.max_body)
                self._error(503, str(api.overload(app.max_pending)))
                return
            try:
                api.check_content_type(self.headers.get("Content-Type"))
                obj = api.decode_body(self._read_body())
                items = api.parse_request(obj, app.classifier, app.max_inputs)
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
            finally:
                app.pending.release()

        def _read_body(self) -> bytes:
            try:
                n = api.check_length(self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding"),
                                     app.max_body)
            except RequestError as e:
                self.close_connection = True
                if e.status == 413:  # read and drop it, so the client gets to read our answer
                    self._drain_body()
                raise
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
        app.hosts = api.HostCheck(address[0], self.server_address[1], app.allowed_hosts)

    def handle_error(self, request, client_address):
        """A client that left (reset, closed, timed out) is not the server's error: no traceback."""
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError | TimeoutError):
            if self.app.access_log:
                sys.stderr.write(f"{client_address[0]} - connection lost ({type(err).__name__})\n")
            return
        super().handle_error(request, client_address)


def make_server(classifier, host: str = "127.0.0.1", port: int = 8000, **limits) -> Server:
    """A bound (not yet serving) server; ``server.app`` holds the batcher. ``port=0``: a free port."""
    return Server((host, port), App(classifier, **limits))


def main(args, clf) -> int:
    try:
        server = make_server(clf, args.host, args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             max_body_bytes=args.max_body_bytes, max_inputs=args.max_inputs,
                             max_pending=args.max_pending, access_log=args.access_log,
                             allowed_hosts=args.allowed_host)
    except OSError as e:
        print(f"glp-runtime: error: cannot listen on {args.host}:{args.port} ({e.strerror}); "
              "pick another --port", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    api.announce(args.host, clf.bundle.summary(), clf.provider, f"on http://{host}:{port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.app.batcher.close()
    return 0
