#!/usr/bin/env python3
"""Django's command-line utility for Amends.

On a bare machine with Python 3.12+, the first run creates .venv from uv.lock
and then re-runs itself inside it, so `python3 manage.py demo` just works.
"""

import os
import sys


def main() -> None:
    from config.bootstrap import ensure_environment

    ensure_environment()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
