"""Fake OpenAI-compatible backends and a fake vLLM bootstrap server for the
mooncake_proxy tests. Standard library only. Each server runs in a thread of the
test process, listens on 127.0.0.1 with a kernel-chosen port and records every
request it receives (path, headers, raw body, parsed JSON, arrival time)."""

import http.server
import json
import socket
import threading
import time


class Recorded:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers  # dict with lower-case names
        self.body = body
        self.t = time.monotonic()
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeOpenAI:
    """A vLLM-like server. Behaviour knobs (plain attributes, change any time):
    model, health_status, delay (s before answering a completion), chunks (SSE
    chunks of a streamed answer), chunk_delay, kill_after (close the socket
    abruptly after that many chunks), kv_params (returned in non-streamed
    answers), status (HTTP status of completions), error_body (the body of a
    non-200 status), body_override (bytes), hold (a threading.Event: completions
    wait for it, at most 30 s, before answering), metrics_text (GET /metrics), tokenize
    (POST /tokenize: a function of the request's JSON returning the token ids, or the
    answer's bytes; None answers 404 with tokenize_404 as the body, FastAPI's route-not-found
    when that is None), tokenize_delay (s before that answer)."""

    def __init__(self, name="fake", model="test-model"):
        self.name = name
        self.model = model
        self.health_status = 200
        self.delay = 0.0
        self.chunks = 5
        self.chunk_delay = 0.0
        self.kill_after = None
        self.kv_params = None
        self.status = 200
        self.body_override = None
        self.error_body = b'{"error":"fake failure"}'
        self.hold = None
        self.pad = 0  # extra bytes of padding in every SSE chunk
        self.metrics_text = None  # GET /metrics answer (Prometheus text); None = 404
        self.tokenize = None
        self.tokenize_delay = 0.0
        self.tokenize_404 = None
        self.socks = set()
        self.requests = []
        self.aborted = 0  # streams the client (the proxy) hung up on
        self.active = 0
        self.lock = threading.Lock()
        self.srv = _Server(("127.0.0.1", 0), self._handler())
        self.port = self.srv.server_address[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.addr
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def kill(self):
        """Dies like a crashed server: no listener, every open connection reset."""
        self.close()
        with self.lock:
            for s in list(self.socks):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def completions(self):
        with self.lock:
            return [r for r in self.requests if r.path.endswith("completions")]

    def tokenize_calls(self):
        with self.lock:
            return [r for r in self.requests if r.path == "/tokenize"]

    def wait_completions(self, n, timeout=5.0):
        """completions() once at least n were recorded. A connector-mode prefill leg
        is fire-and-forget: the client may have its answer before it arrives here."""
        deadline = time.monotonic() + timeout
        while len(self.completions()) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.completions()

    def answer_json(self, req):
        if self.body_override is not None:
            return self.body_override
        ans = {
            "id": "cmpl-%s" % self.name,
            "object": "text_completion",
            "model": self.model,
            "choices": [{"index": 0, "text": "hello from %s" % self.name, "finish_reason": "length"}],
            "served_by": self.name,
        }
        if self.kv_params is not None:
            ans["kv_transfer_params"] = self.kv_params
        return json.dumps(ans).encode()

    def chunk(self, i, name):
        return ("data: " + json.dumps({"id": "s", "i": i, "by": name, "choices": [{"text": "t%d" % i}],
                                       "pad": "x" * self.pad}) + "\n\n").encode()

    def expected_stream(self):
        return b"".join(self.chunk(i, self.name) for i in range(self.chunks)) + b"data: [DONE]\n\n"

    def _handler(self):
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.socks.add(self.connection)

            def finish(self):
                with fake.lock:
                    fake.socks.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _send(self, status, body, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self, body):
                r = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with fake.lock:
                    fake.requests.append(r)
                return r

            def do_GET(self):
                self._record(b"")
                if self.path == "/health":
                    self._send(fake.health_status, b"{}")
                elif self.path == "/metrics" and fake.metrics_text is not None:
                    self._send(200, fake.metrics_text.encode(), "text/plain; version=0.0.4")
                elif self.path == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": fake.model, "object": "model"}]}).encode())
                else:
                    self._send(404, b'{"detail":"not found"}')

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                r = self._record(body)
                with fake.lock:
                    fake.active += 1
                try:
                    self._post(r)
                finally:
                    with fake.lock:
                        fake.active -= 1

            def _tokenize(self, r):
                if fake.tokenize_delay:
                    time.sleep(fake.tokenize_delay)
                if fake.tokenize is None:
                    self._send(404, fake.tokenize_404 or b'{"detail":"Not Found"}')
                    return
                out = fake.tokenize(r.json)
                if not isinstance(out, bytes):
                    out = json.dumps({"count": len(out), "max_model_len": 4096,
                                      "tokens": out, "token_strs": None}).encode()
                try:
                    self._send(200, out)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _post(self, r):
                if r.path == "/tokenize":
                    self._tokenize(r)
                    return
                if fake.hold is not None:
                    fake.hold.wait(30)
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.status != 200:
                    self._send(fake.status, fake.error_body)
                    return
                if not (r.json and r.json.get("stream")):
                    try:
                        self._send(200, fake.answer_json(r))
                    except (BrokenPipeError, ConnectionResetError):
                        with fake.lock:
                            fake.aborted += 1
                        self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i in range(fake.chunks):
                        if fake.kill_after is not None and i == fake.kill_after:
                            self.wfile.flush()
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        c = fake.chunk(i, fake.name)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                        self.wfile.flush()
                        if fake.chunk_delay:
                            time.sleep(fake.chunk_delay)
                    c = b"data: [DONE]\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(c), c))
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with fake.lock:
                        fake.aborted += 1
                    self.close_connection = True

        return H


class FakeBootstrap:
    """vLLM MooncakeConnector bootstrap server: GET /query -> {dp_rank: {engine_id, worker_addr}}."""

    def __init__(self, engine_ids=("engine-P0",), port=0):
        self.engine_ids = list(engine_ids)
        self.queries = 0
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                fake.queries += 1
                if self.path != "/query":
                    body, st = b"{}", 404
                else:
                    body = json.dumps({str(i): {"engine_id": e, "worker_addr": {"0": {"0": "tcp://127.0.0.1:1"}}}
                                       for i, e in enumerate(fake.engine_ids)}).encode()
                    st = 200
                self.send_response(st)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = _Server(("127.0.0.1", port), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
