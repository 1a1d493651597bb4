"""A local stand-in for Postmark's /email endpoint, for anymail's real Postmark backend.

A real HTTP server on 127.0.0.1 (a free port) in a thread. It answers as
Postmark does (https://postmarkapp.com/developer/api/email-api): a JSON body
with MessageID and ErrorCode 0 when it takes a message; 422 with an ErrorCode
for a refused recipient; and whatever a test scripts: 429 with Retry-After,
5xx. It counts the messages it took per delivery id (from the metadata), so a
test can assert that nobody got one twice.

    stub = PostmarkStub().start()
    settings.MAILERS = {"default": stub.mailer()}
    stub.answer_next(429, retry_after=1)       # the next request is throttled
    stub.reject("ann@example.com")             # Postmark 406: inactive recipient
    stub.slow("bob@example.com", 2)            # taken, but the answer comes too late
    stub.accepted["17"]                        # how many times delivery 17 was taken
    stub.proxied                               # calls that came to it as a forward proxy
"""

import json
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TOKEN = "stub-server-token"


@dataclass
class Request:
    at: float  # time.monotonic()
    delivery_id: str
    to: str
    status: int
    payload: dict = field(repr=False)


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5. Worker processes whose sending threads all
    # connect at once (each thread its own connection, 16 threads or more) overflow it
    # while this process is busy, and then some connections are reset: an "answer lost"
    # that no real ESP endpoint would cause at that rate (found by the chaos test,
    # tests/test_chaos.py).
    request_queue_size = 1024


class PostmarkStub:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted: Counter[str] = Counter()  # delivery id → messages taken
        self.requests: list[Request] = []
        self._scripts: dict[str | None, deque[tuple[int, dict, dict]]] = {}
        self._rejected: dict[str, tuple[int, str]] = {}
        self._slow: dict[str, float] = {}
        self.on_accept = None  # called with the payload after a message is taken
        self.delay = 0.0  # seconds added to every answer
        self.in_flight = 0  # requests being answered right now
        self.peak_in_flight = 0
        self.proxied = 0  # requests that came to it as a forward proxy
        self._server: ThreadingHTTPServer | None = None

    # --- Telling it what to answer -------------------------------------------------
    def answer_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        address: str | None = None,
    ):
        """The next `times` requests (for `address`, or any) get `status`; nothing is taken."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        body = {"ErrorCode": 0 if status >= 500 else 429, "Message": f"Stub answer {status}"}
        with self.lock:
            script = self._scripts.setdefault(address.lower() if address else None, deque())
            for _ in range(times):
                script.append((status, headers, body))

    def reject(self, address: str, *, code: int = 406, message: str | None = None):
        """Postmark refuses this recipient: 406 inactive (default) or 300 invalid."""
        if message is None:
            if code == 406:
                message = (
                    "You tried to send to recipient(s) that have been marked as inactive. "
                    f"Found inactive addresses: {address.lower()}. Inactive recipients are ones "
                    "that have generated a hard bounce or a spam complaint."
                )
            else:
                message = f"Invalid 'To' address: '{address}'."
        with self.lock:
            self._rejected[address.lower()] = (code, message)

    def slow(self, address: str, seconds: float):
        """Take this recipient's message, but answer only after `seconds` (a lost answer)."""
        with self.lock:
            self._slow[address.lower()] = seconds

    # --- What it saw ---------------------------------------------------------------
    @property
    def taken(self) -> int:
        return sum(self.accepted.values())

    def requests_for(self, delivery_id) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.delivery_id == str(delivery_id)]

    # --- Running -------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def mailer(self, **options) -> dict:
        """A MAILERS entry: anymail's real Postmark backend, pointed here."""
        return {
            "BACKEND": "anymail.backends.postmark.EmailBackend",
            "OPTIONS": {"server_token": TOKEN, "api_url": self.url, "timeout": 5} | options,
        }

    def start(self) -> "PostmarkStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as Postmark's API does: a sender's connection serves many calls.
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits for a delayed ACK

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (a SIGKILLed worker): like a real ESP,
                    # take nothing from a message that never fully arrived.
                    self.close_connection = True
                    return
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    return self._answer(400, {}, {"ErrorCode": 402, "Message": "Invalid JSON"})
                # A request in absolute form ("POST http://host/email") came through the
                # stub as a forward proxy: the sender's environment named it as its proxy.
                target = urlsplit(self.path)
                if target.scheme:
                    with stub.lock:
                        stub.proxied += 1
                if target.path.rstrip("/") != "/email":
                    return self._answer(404, {}, {"ErrorCode": 404, "Message": "Not found"})
                if self.headers.get("X-Postmark-Server-Token") != TOKEN:
                    return self._answer(401, {}, {"ErrorCode": 10, "Message": "Bad token"})
                status, headers, body = stub._decide(payload)
                to = payload.get("To", "").rsplit("<", 1)[-1].rstrip(">").strip().lower()
                with stub.lock:
                    stub.in_flight += 1
                    stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                try:
                    if stub.delay or to in stub._slow:
                        time.sleep(stub._slow.get(to, stub.delay))
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                self._answer(status, headers, body)
                if status == 200 and stub.on_accept is not None:
                    stub.on_accept(payload)

            def _answer(self, status, headers, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _decide(self, payload: dict) -> tuple[int, dict, dict]:
        to = payload.get("To", "")
        delivery_id = str((payload.get("Metadata") or {}).get("delivery_id", ""))
        with self.lock:
            address = to.rsplit("<", 1)[-1].rstrip(">").strip().lower()
            if address in self._rejected:
                code, message = self._rejected[address]
                status, headers, body = 422, {}, {"ErrorCode": code, "Message": message}
            elif self._scripts.get(address):
                status, headers, body = self._scripts[address].popleft()
            elif self._scripts.get(None):
                status, headers, body = self._scripts[None].popleft()
            else:
                status, headers = 200, {}
                body = {
                    "To": to,
                    "SubmittedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "MessageID": str(uuid.uuid4()),
                    "ErrorCode": 0,
                    "Message": "OK",
                }
                self.accepted[delivery_id] += 1
            self.requests.append(Request(time.monotonic(), delivery_id, to, status, payload))
        return status, headers, body
