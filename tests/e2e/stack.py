"""The live stack the end-to-end tests drive: gunicorn, an rq worker, PostgreSQL, Redis.

It is production's shape on one machine: `gunicorn config.wsgi` and
`manage.py rqworker` as separate processes, on a PostgreSQL database of its
own (created, migrated and seeded here, dropped afterwards) and the Redis
named by REDIS_URL. Mail goes through anymail's real Postmark backend to a
local Postmark stand-in (tests/esp_stub.py) that remembers the MessageID it
gave each recipient, so the tests can post Postmark's own webhook JSON back.

The test process never touches the stack's database through Django: it sees
what a user sees (the browser), what the ESP sees (the stub), and runs
management commands as an operator would.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.esp_stub import TOKEN, PostmarkStub

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "var" / "e2e" / "logs"
WEBHOOK_USER, WEBHOOK_PASSWORD = "postmark", "e2e-webhook-secret-0123456789"


class RecordingPostmarkStub(PostmarkStub):
    """The Postmark stand-in, also remembering each accepted message's MessageID and body."""

    def __init__(self):
        super().__init__()
        self.sent: list[dict] = []  # {"to", "message_id", "payload"} per accepted message

    def _decide(self, payload):
        status, headers, body = super()._decide(payload)
        if status == 200:
            to = payload.get("To", "").rsplit("<", 1)[-1].rstrip(">").strip().lower()
            with self.lock:
                self.sent.append({"to": to, "message_id": body["MessageID"], "payload": payload})
        return status, headers, body

    @property
    def apologies(self) -> list[dict]:
        """The campaign messages (Amends' own mail, such as approval requests, left out)."""
        with self.lock:
            return [m for m in self.sent if _header(m["payload"], "X-Amends-Delivery")]

    def message_for(self, address: str) -> dict:
        address = address.lower()
        return next(m for m in self.apologies if m["to"] == address)


def _header(payload: dict, name: str) -> str:
    return next((h["Value"] for h in payload.get("Headers") or [] if h["Name"] == name), "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class Stack:
    def __init__(self, *, database_url: str, redis_url: str):
        self.name = f"amends_e2e_{os.getpid()}"
        self.admin_url = _with_database(database_url, "postgres")
        self.database_url = _with_database(database_url, self.name)
        self.redis_url = redis_url
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stub = RecordingPostmarkStub()
        self.processes: dict[str, subprocess.Popen] = {}
        self.seed: dict = {}

    # --- Environment -------------------------------------------------------------
    def env(self) -> dict:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTEST_", "DJANGO_SETTINGS"))
        }
        env.update(
            AMENDS_NO_BOOTSTRAP="1",
            AMENDS_PROFILE="development",
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            SITE_URL=self.base_url,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            COMPANY_NAME="Example Retail",
            MAIL_BACKEND="anymail.backends.postmark.EmailBackend",
            POSTMARK_SERVER_TOKEN=TOKEN,
            POSTMARK_API_URL=self.stub.url,
            WEBHOOK_SECRET=f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
            # Fast enough for a test, slow enough that the progress bar is seen moving.
            SEND_RATE_LIMIT="60",
            SEND_RETRY_BASE_SECONDS="0.2",
            SEND_CONTROL_CHECK_SECONDS="0.2",
            SEND_REDIS_PREFIX=f"amends-e2e:{os.getpid()}:{time.monotonic_ns()}",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        return env

    def run(self, *args: str, timeout: float = 180) -> str:
        """Run `python <args>` in the stack's environment; return its standard output."""
        result = subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def manage(self, *args: str, timeout: float = 180) -> str:
        return self.run("manage.py", *args, timeout=timeout)

    # --- Life cycle ----------------------------------------------------------------
    def _psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def start(self) -> "Stack":
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.stub.start()
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}"')
        self._psql(f'CREATE DATABASE "{self.name}"')
        self.manage("migrate", "--no-input", timeout=300)
        self.seed = json.loads(self.run("-m", "tests.e2e.seed").strip().splitlines()[-1])
        self._empty_queues()
        self._spawn(
            "gunicorn",
            "-m", "gunicorn", "config.wsgi",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1", "--threads", "8", "--timeout", "120",
        )  # fmt: skip
        self._spawn("rqworker", "manage.py", "rqworker", "default", "send", "webhooks", "exports")
        self._wait_healthy()
        return self

    def _empty_queues(self) -> None:
        # Jobs other tests left on this Redis database name rows of their own database;
        # the stack's worker would run them against this one.
        import redis
        from rq import Queue

        connection = redis.Redis.from_url(self.redis_url)
        for name in ("default", "send", "webhooks", "exports"):
            queue = Queue(name, connection=connection)
            queue.empty()
            for registry in (queue.scheduled_job_registry, queue.deferred_job_registry):
                for job_id in registry.get_job_ids():
                    registry.remove(job_id, delete_job=True)

    def _spawn(self, name: str, *args: str) -> None:
        log = open(LOG_DIR / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() ends its children too
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited early:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as answer:
                    if json.load(answer).get("status") == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"gunicorn did not answer /healthz:\n{self.log_tail('gunicorn')}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = LOG_DIR / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.stub.stop()
        if os.environ.get("AMENDS_E2E_KEEP_DB") == "1":  # to look into a failure afterwards
            print(f"e2e: kept the database {self.database_url}", file=sys.stderr)
            return
        try:
            self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - a leftover database is not a test failure
            print(f"e2e: could not drop {self.name}: {exc}", file=sys.stderr)
