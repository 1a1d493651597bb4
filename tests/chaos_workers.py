"""Worker processes for the chaos runs (tests/chaos.py): start, SIGKILL, restart, and wait.

Real `manage.py rqworker send` subprocesses with an environment of their own:
this run's database and Redis, anymail's Postmark backend pointed at the stub,
short leases. Linux only (/proc, pidfds).
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The URL of the database this process is connected to (the test database in a test)."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(*, database_url: str, redis_url: str, stub_url: str, config, app_name: str):
    """The workers' environment (`config`: a tests.chaos.ChaosConfig). Their database
    connections carry `app_name`, so the run can tell when every connection of a killed
    worker is gone (see `await_gone`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEND_", "PYTEST"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        AMENDS_NO_BOOTSTRAP="1",
        DATABASE_URL=f"{database_url}?application_name={app_name}",
        REDIS_URL=redis_url,
        # anymail's real Postmark backend, pointed at the stub.
        MAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        POSTMARK_SERVER_TOKEN="stub-server-token",
        POSTMARK_API_URL=stub_url,
        SEND_LEASE_SECONDS=str(config.lease_seconds),
        SEND_CONCURRENCY=str(config.concurrency),
        SEND_RETRY_BASE_SECONDS="0.2",
        SEND_CONTROL_CHECK_SECONDS="0.2",
        SEND_MAX_INLINE_WAIT_SECONDS="5",
        SEND_REDIS_PREFIX=f"amends-chaos:{app_name}",
    )
    return env


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid …": comm may hold spaces, so split after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def _children(parents: set[int], *, above: int = 0) -> dict[int, int]:
    """child pid → parent pid for the children of `parents`, from /proc (Linux).

    `above`: look only at pids above it (children are usually younger than their
    parent), a few files instead of every process on the machine.
    """
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) > above:
            parent = _parent(int(entry.name))
            if parent in parents:
                found[int(entry.name)] = parent
    return found


class WorkerPool:
    """`manage.py rqworker send` subprocesses, each in its own process group.

    A kill is SIGKILL for the rq worker and the work horse it forked for the job
    (rq puts the horse in a process group of its own, so killing the worker's
    group alone would leave the horse sending): as when a container or a
    machine dies. To land between the ESP's answer and the worker's UPDATE, a
    kill must be quick: the horses are found ahead of time (`watch`, every
    0.1 s) and held as pidfds, which signal exactly that process even if its
    pid were reused.
    """

    def __init__(self, size: int, env: dict[str, str], log_path: Path):
        self.size, self.env, self.log_path = size, env, log_path
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen] = []
        self.horses: dict[int, int] = {}  # horse pid → pidfd
        self.horses_lock = threading.Lock()
        self.killed = 0
        self.unexpected_exits = 0
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            # --skip-checks: a restart sooner (the system checks import every view).
            [sys.executable, "manage.py", "rqworker", "send", "--skip-checks"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        with self.lock:
            self.procs = [self._spawn() for _ in range(self.size)]

    def watch(self) -> None:
        """Find the workers' current horses and hold a pidfd for each.

        The scan takes milliseconds on a busy machine, so it holds no lock: a kill
        must never wait for it.
        """
        parents = {p.pid for p in list(self.procs) if p.poll() is None}
        if not parents:
            return
        found = {}
        for pid, parent in _children(parents, above=min(parents)).items():
            if pid in self.horses:
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            if _parent(pid) == parent:  # the fd is that child, not a reused pid
                found[pid] = fd
            else:
                os.close(fd)
        with self.horses_lock:
            self.horses.update(found)
            for pid, fd in list(self.horses.items()):
                if _parent(pid) not in parents:  # finished (or killed): let it go
                    os.close(fd)
                    del self.horses[pid]

    def kill_all(self) -> int:
        """SIGKILL every worker and its horse; returns how many workers were alive."""
        with self.horses_lock:
            for fd in self.horses.values():  # first, and at once: they do the sending
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        with self.lock:
            alive = [p for p in self.procs if p.poll() is None]
            for proc in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGSTOP)  # it forks no new horse from now on
            # A horse forked since the last watch: every process on the machine is looked at.
            for pid in _children({p.pid for p in alive}):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for proc in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            for proc in self.procs:
                proc.wait()
            with self.horses_lock:
                for fd in self.horses.values():
                    os.close(fd)
                self.horses.clear()
            self.killed += len(alive)
            self.procs = []
            return len(alive)

    def restart(self) -> None:
        """Start workers up to `size`; a worker that died by itself is counted and replaced."""
        with self.lock:
            running = []
            for proc in self.procs:
                if proc.poll() is None:
                    running.append(proc)
                else:
                    self.unexpected_exits += 1
            while len(running) < self.size:
                running.append(self._spawn())
            self.procs = running

    def stop(self) -> None:
        self.kill_all()
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def await_gone(app_name: str, timeout: float = 10.0) -> None:
    """Wait until PostgreSQL has no connection left from the killed workers.

    A statement a worker sent just before its death may still be running in its
    server process; once that process has left, every transaction of the worker
    committed or rolled back, and the rows hold what they will hold.
    """
    from django.db import connection

    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app_name]
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.01)
    raise RuntimeError(f"the killed workers' database connections ({app_name}) did not go away")
