"""The one way to run background work.

Production (REDIS_URL set): the job goes to an rq queue once the transaction
commits, and an `rqworker` process runs it. Embedded mode (no REDIS_URL): the
job runs in this process right after the commit. Jobs must therefore be
idempotent and take ids, not objects: they may run again after a crash.
"""

from collections.abc import Callable

from django.conf import settings
from django.db import transaction


def enqueue(
    func: Callable, *args, queue: str = "default", job_timeout: int | None = None, **kwargs
) -> None:
    """Run func(*args, **kwargs) after this transaction commits.

    `job_timeout` (seconds) overrides the queue's default for long jobs such as
    a multi-gigabyte import; it only applies on rq.
    """
    if settings.REDIS_URL:
        import django_rq

        # django-rq enqueues on commit by default (COMMIT_MODE "on_db_commit").
        django_rq.get_queue(queue).enqueue(func, *args, job_timeout=job_timeout, **kwargs)
    else:
        # robust: a failing job must not turn the request that queued it into a 500;
        # jobs record their own failure on the row they work on.
        transaction.on_commit(lambda: func(*args, **kwargs), robust=True)
