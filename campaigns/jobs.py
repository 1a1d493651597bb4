"""Background jobs of the campaigns app. Each takes ids and is safe to run again.

Send jobs go to the "send" queue (an `rqworker send` process; in embedded mode
they run in-process after the commit). The sweeper job can run from rq's
scheduler or cron; `manage.py sweep_deliveries` does the same.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import transaction

from incidents.queue import enqueue

log = logging.getLogger(__name__)

SEND_QUEUE = "send"


def send_batch(campaign_id: int, first_id: int, last_id: int) -> dict:
    """Send the due, queued deliveries of a campaign between two ids (campaigns.sending)."""
    from campaigns import sending

    return sending.send_batch(campaign_id, first_id, last_id)


def sweep_deliveries() -> dict:
    """Recover expired leases and lost jobs (campaigns.sending.sweep)."""
    from campaigns import sending

    report = sending.sweep()
    log.info("sweep_deliveries: %s", report)
    return report


def batch_job_id(campaign_id: int, first_id: int, last_id: int) -> str:
    return f"send-{campaign_id}-{first_id}-{last_id}"


def _push(campaign_id: int, ranges: list[tuple[int, int]]) -> None:
    import django_rq
    from rq.job import JobStatus

    send_queue = django_rq.get_queue(SEND_QUEUE)
    for first_id, last_id in ranges:
        job_id = batch_job_id(campaign_id, first_id, last_id)
        waiting = send_queue.fetch_job(job_id)
        if waiting is not None and waiting.get_status(refresh=False) == JobStatus.QUEUED:
            continue  # the same batch is still waiting in the queue
        send_queue.enqueue(
            send_batch,
            campaign_id,
            first_id,
            last_id,
            job_id=job_id,
            job_timeout=settings.SEND_JOB_TIMEOUT,
            result_ttl=3600,
        )


def enqueue_batches(campaign_id: int, ranges: list[tuple[int, int]]) -> None:
    """Queue one send job per id range, once the current transaction commits.

    On rq a batch has a fixed job id, so a batch still waiting in the queue is
    not queued twice (the sweeper may ask again every minute).
    """
    if not ranges:
        return
    if settings.REDIS_URL:
        transaction.on_commit(lambda: _push(campaign_id, ranges))
    else:
        for first_id, last_id in ranges:
            enqueue(send_batch, campaign_id, first_id, last_id, queue=SEND_QUEUE)


# --- Tracking events ------------------------------------------------------------------------

WEBHOOK_QUEUE = "webhooks"
# Set while an apply job waits in the queue: a burst of webhook requests queues one job,
# not one per request. The job deletes it when it starts, so events stored after that
# queue the next job; the expiry covers a job lost with Redis.
APPLY_PENDING_KEY = "amends:tracking:apply-queued"


_redis = {}


def _redis_for_webhooks():
    """One Redis client per process and URL (django_rq.get_connection builds a new pool each
    call: a new TCP connection for every webhook request)."""
    url = settings.REDIS_URL
    if url not in _redis:
        import django_rq

        _redis[url] = django_rq.get_connection(WEBHOOK_QUEUE)
    return _redis[url]


def apply_events() -> dict:
    """Apply the stored, unapplied ESP events (campaigns.tracking.apply). Safe to run concurrently."""
    from campaigns.tracking.apply import apply_pending

    if settings.REDIS_URL:
        # Let a burst gather first: while the key stands, webhook requests queue no other
        # job, so one job applies what came in this while, for one job's fixed cost (at
        # one event a request, a job per few events cost the worker half a core).
        time.sleep(settings.APPLY_GATHER_SECONDS)
        _redis_for_webhooks().delete(APPLY_PENDING_KEY)
    report = apply_pending()
    log.info("apply_events: %s", report)
    return report


def _push_apply() -> None:
    import django_rq

    connection = _redis_for_webhooks()
    if connection.set(APPLY_PENDING_KEY, "1", nx=True, ex=30):
        django_rq.get_queue(WEBHOOK_QUEUE, connection=connection).enqueue(
            apply_events, job_timeout=settings.SEND_JOB_TIMEOUT, result_ttl=60
        )


class _ApplyPusher:
    """At most one apply push per APPLY_PUSH_SECONDS per process, never one too few.

    A Redis round trip for every webhook request cost a third of its CPU. A
    request that comes within the interval after this process's last push
    leaves the push to a timer at the end of the interval. That push comes
    after its events were committed, so it queues a job that starts after
    them: either its SET finds the key gone and queues one, or the key
    belongs to a job still waiting in the queue.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._timer: threading.Timer | None = None

    def __call__(self) -> None:
        with self._lock:
            wait = self._last + settings.APPLY_PUSH_SECONDS - time.monotonic()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._push_later)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._last = time.monotonic()
        # Raises when Redis is down: the webhook answers 500 and the ESP sends again.
        _push_apply()

    def _push_later(self) -> None:
        with self._lock:
            self._timer, self._last = None, time.monotonic()
        try:
            _push_apply()
        except Exception:
            # The events are stored; the next push, or the sweeper's, applies them.
            log.exception("could not queue the apply job")


_apply_pusher = _ApplyPusher()


def enqueue_apply() -> None:
    """Queue the apply job once the current transaction commits (in-process without Redis)."""
    if settings.REDIS_URL:
        transaction.on_commit(_apply_pusher)
    else:
        enqueue(apply_events, queue=WEBHOOK_QUEUE)
