"""Helpers for the benchmarks: a PostgreSQL database of their own, timing and peak memory.

Benchmarks run the real commands as subprocesses, so what they measure is what
an operator gets: Django start-up included, and the peak RSS of that process alone.
"""

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
PYTHON = sys.executable
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/amends_bench"

# What an operator runs: DEBUG off. With it on, Django keeps a log of every query, which
# cost a sending worker about a tenth of its CPU. Inherited by every process a bench starts.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-key-never-used-elsewhere-0123456789abcdef")


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_URL


def django_env(url: str) -> dict[str, str]:
    """The environment for manage.py: the bench database, and media under bench/data/."""
    env = dict(os.environ)
    env["DATABASE_URL"] = url
    env.setdefault("AMENDS_VAR_DIR", str(DATA / "var"))
    env.pop("REDIS_URL", None)
    return env


def psql(url: str, *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *args],
        check=True,
        text=True,
        capture_output=capture,
    )
    return result.stdout if capture else ""


def ensure_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    exists = psql(
        admin, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'", capture=True
    )
    if exists.strip() != "1":
        psql(admin, "-c", f'CREATE DATABASE "{name}"')


def migrate(url: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input", "-v0", "--skip-checks"],
        cwd=ROOT,
        env=django_env(url),
        check=True,
    )


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_measured(command: list[str], *, env: dict[str, str] | None = None) -> Measured:
    """Run `command`; wall time, and the peak RSS of that process (from wait4's rusage)."""
    started = time.monotonic()
    with (
        open(DATA / ".stdout", "w+") as out,
        open(DATA / ".stderr", "w+") as err,
    ):
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode:
        sys.stderr.write(stdout + stderr)
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    # ru_maxrss is in KiB on Linux.
    return Measured(seconds, usage.ru_maxrss / 1024, stdout, stderr)


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        raise SystemExit(f"{tool} is needed for this benchmark")


def machine() -> str:
    """CPUs, model and family, and load: sessions' VMs all say "AMD EPYC" at different speeds."""
    cpus = os.cpu_count()
    try:
        info = dict(
            (key.strip(), value.strip())
            for key, _, value in (
                line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines()
            )
            if key.strip() in ("model name", "cpu family", "model")
        )
        model = info["model name"]
        if "cpu family" in info:
            model += f", family {info['cpu family']} model {info.get('model', '?')}"
    except (OSError, KeyError):
        model = "unknown CPU"
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return f"{cpus} CPUs ({model}), load average {load}"


TICKS = os.sysconf("SC_CLK_TCK")


class BackendCPU:
    """CPU seconds of the PostgreSQL backends serving one database, sampled by `poll`.

    Each backend's last reading counts once it is gone (a work horse's
    connections end with its job), so up to one poll interval of each
    backend's CPU is missed. Other databases on the same server do not count.
    """

    def __init__(self, database: str):
        self.database = database
        self.seen: dict[int, float] = {}

    def poll(self, cursor) -> None:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [self.database],
        )
        for (pid,) in cursor.fetchall():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.seen[pid] = (int(fields[11]) + int(fields[12])) / TICKS

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


# --- Incidents for the benches (after django.setup()) -----------------------------------------


def staff_and_incident(**incident_fields):
    """A Support and a Comms user, and an incident the Support user opened; (support, comms,
    incident). `incident_fields` go to `incident_open` (title, summary, template, …)."""
    from incidents import services
    from incidents.actors import Actor
    from incidents.roles import COMMS, SUPPORT

    setup = Actor.system("bench")
    support, comms = (
        services.user_create_with_role(
            username=f"bench_{name}",
            email=f"{name}@bench.example",
            password=None,
            role=role,
            by=setup,
        )
        for name, role in (("support", SUPPORT), ("comms", COMMS))
    )
    incident = services.incident_open(by=Actor.for_user(support), **incident_fields)
    return support, comms, incident


def approved_version(*, segment, support, comms, **version_fields):
    """An apology for `segment` written by `support` and approved by `comms`."""
    from campaigns import services as campaign_services
    from incidents.actors import Actor

    version = campaign_services.version_create(
        by=Actor.for_user(support), segment=segment, **version_fields
    )
    campaign_services.version_approve(version=version, by=Actor.for_user(comms))
    return version
