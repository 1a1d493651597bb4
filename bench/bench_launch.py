"""Benchmark: launching a campaign to a million people (deliveries created, send jobs queued).

    python bench/bench_launch.py [--people 1000000] [--repeat 1]

In a database of its own (amends_bench_send, made fresh from a migrated
template), it freezes PEOPLE affected people through audience_freeze, approves
an apology, and times `campaign_launch` with rq on Redis (db 11 unless
BENCH_REDIS_URL says otherwise): one delivery per person in one INSERT … SELECT,
the counts, the id ranges of the batches, the audit entry, the commit and the
jobs pushed to the `send` queue. No worker runs; the queue is emptied after.

Targets (issue 5): under 60 s for 1,000,000 people; at most 2,000 jobs per
million (batches of 500).
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402
from bench.send_data import (  # noqa: E402
    DEFAULT_URL,
    fresh_database,
    load,
    make_people,
    redis_url,
    setup_django,
)


class Phases:
    """Wall time spent in named functions of the launch (wrapped for this run only)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0) + time.perf_counter() - started

        setattr(owner, name, timed)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument(
        "--batch-size", type=int, help="deliveries per job (default: SEND_BATCH_SIZE)"
    )
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    fresh_database(args.url)
    setup_django(args.url, redis_url())
    import django_rq
    from django.db import connection

    from campaigns import jobs
    from campaigns.models import Delivery
    from campaigns.services import sending as sending_services
    from incidents.actors import Actor

    send_queue = django_rq.get_queue("send")
    send_queue.empty()

    started = time.monotonic()
    data = make_people(args.people)
    print(
        f"setup: {args.people:,} people frozen in {data['freeze_seconds']:.1f} s "
        f"(all setup {time.monotonic() - started:.1f} s)"
    )
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")  # the freeze's dirty pages are not the launch's to write

    phases = Phases()
    phases.wrap(sending_services, "_create_deliveries", "INSERT … SELECT deliveries")
    phases.wrap(sending_services, "_counts", "counts by status")
    phases.wrap(sending_services, "_enqueue_queued", "batch id ranges")
    phases.wrap(jobs, "_push", "jobs pushed to Redis (on commit)")

    print(f"launch: load average before {load()}", flush=True)
    started = time.perf_counter()
    campaign = sending_services.campaign_launch(
        version=data["version"],
        segment=data["segment"],
        by=Actor.for_user(data["support"]),
        rate_limit=1000,
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - started
    queued = Delivery.objects.filter(campaign=campaign, status=Delivery.Status.QUEUED).count()
    job_count = send_queue.count
    per_million = job_count * 1_000_000 / max(1, queued)
    accounted = sum(phases.seconds.values())  # the phases do not overlap
    print(f"launch: {queued:,} deliveries queued, {job_count:,} jobs in {seconds:.2f} s")
    for label, value in phases.seconds.items():
        print(f"  {label:<36} {value:7.2f} s")
    rest = seconds - accounted
    print(f"  {'the rest (audit, commit, checks)':<36} {rest:7.2f} s")
    print(f"jobs per 1M recipients: {per_million:,.0f}")
    print(f"load average after: {load()}")
    print(
        f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    send_queue.empty()


if __name__ == "__main__":
    main()
