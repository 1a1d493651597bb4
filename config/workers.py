"""The rq worker Amends runs: what jobs need is loaded once per worker, not once per job.

rq forks a work horse for every job, and whatever the horse loads dies with it.
So the worker loads, before its first fork, what every job would otherwise
load again: the job modules and the services they call, the ESP's anymail
backend, the translation catalogs and locale formats (55–80 ms of CPU a job
when a horse imported the sending code itself; docs/performance.md, session 6).
The horses inherit all of it, as gunicorn's `--preload` does for web workers.
"""

import gc
from importlib import import_module

from django.conf import settings
from django.utils import formats
from django.utils.module_loading import import_string
from django.utils.translation import trans_real
from rq.worker import Worker as RQWorker

# The jobs' modules and what they call, lazily too (tests/test_workers.py checks that a
# send job imports nothing more of ours).
JOB_MODULES = (
    "campaigns.jobs",
    "campaigns.sending",
    "campaigns.services",
    "campaigns.selectors",
    "campaigns.tracking.apply",
    "incidents.jobs",
    "incidents.services",
    "incidents.selectors",
    "incidents.access",
    "incidents.export.jobs",
)


def preload() -> None:
    """Load what jobs use, so that every work horse inherits it."""
    for module in JOB_MODULES:
        import_module(module)
    for mailer in settings.MAILERS.values():
        import_string(mailer["BACKEND"])  # the ESP backend and its HTTP client
    for code, _name in settings.LANGUAGES:
        trans_real.translation(code)
        formats.get_format_modules(code)
    # What exists now lives as long as the worker. Frozen, it is out of the horses'
    # collector's reach: a full collection in a horse walked all of it, writing to
    # pages the fork had shared, 110 ms of CPU and 40 MB copied (docs/performance.md).
    gc.freeze()


class Worker(RQWorker):
    """rq's forking worker, preloaded (settings.RQ["WORKER_CLASS"])."""

    def work(self, *args, **kwargs):
        preload()
        return super().work(*args, **kwargs)
