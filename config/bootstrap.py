"""Make sure manage.py runs inside the project's locked virtual environment.

Standard library only: this runs before any dependency is installed.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".amends-lock-sha256"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _lock_digest() -> str:
    return hashlib.sha256((ROOT / "uv.lock").read_bytes()).hexdigest()


def _inside_project_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _sync() -> None:
    python = str(_venv_python())
    print("Amends: installing the locked dependencies into .venv (first run only)…", flush=True)
    has_uv = subprocess.run([python, "-m", "uv", "--version"], capture_output=True)  # noqa: S603
    if has_uv.returncode != 0:
        subprocess.run([python, "-m", "ensurepip", "--upgrade"], check=True, capture_output=True)  # noqa: S603
        subprocess.run([python, "-m", "pip", "install", "--quiet", "uv"], check=True)  # noqa: S603
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV), "VIRTUAL_ENV": str(VENV)}
    subprocess.run(  # noqa: S603
        [python, "-m", "uv", "sync", "--locked", "--python", python],
        check=True,
        cwd=ROOT,
        env=env,
    )
    STAMP.write_text(_lock_digest())


def ensure_environment() -> None:
    """Create or refresh .venv when needed, then re-exec this command inside it."""
    if os.environ.get("AMENDS_NO_BOOTSTRAP") == "1":
        return
    if sys.version_info < (3, 12):  # noqa: UP036 - may run under an older python3
        sys.exit(
            f"Amends needs Python 3.12 or newer; this is {sys.version.split()[0]}. "
            "Run it with python3.12 (or newer)."
        )
    up_to_date = STAMP.exists() and STAMP.read_text() == _lock_digest()
    if _inside_project_venv() and up_to_date:
        return
    if not _inside_project_venv() and sys.prefix != sys.base_prefix:
        # Someone runs us from their own virtualenv (uv run, an IDE): respect it.
        return
    if not _venv_python().exists():
        venv.create(VENV, with_pip=True)
    if not up_to_date:
        _sync()
    python = str(_venv_python())
    os.execv(python, [python, *sys.argv])  # noqa: S606
