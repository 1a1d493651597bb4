"""Never twice, never lost (issue 5), under crashes: the chaos test.

5,000 people through 2 real `manage.py rqworker send` processes on the real
Redis and this test's PostgreSQL database, against the Postmark stub (anymail's
real backend), while every worker is SIGKILLed in 5 rounds (10 kills; 3 rounds
fire from inside the stub right after it answered 200, before the worker can
record the answer) and the Redis database is flushed once. The sweeper runs
every half second with short leases. The machinery is in tests/chaos.py;
bench/chaos.py runs it many times (docs/performance.md, "Chaos").

It needs REDIS_URL and PostgreSQL: the workers are separate processes, so they
need a database server they can share with the test, and a queue. The flush
empties REDIS_URL's database: give the run a Redis database of its own.
"""

import random
import time

import pytest
from django.conf import settings
from django.db import connection

from campaigns import services
from campaigns.models import Campaign
from incidents.actors import Actor
from tests.chaos import ChaosConfig, check, prepare, run_chaos, script_stub
from tests.chaos_workers import WorkerPool, database_url, worker_env
from tests.esp_stub import PostmarkStub

pytestmark = [
    pytest.mark.skipif(
        not settings.REDIS_URL, reason="the chaos test runs real rq workers: it needs REDIS_URL"
    ),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the chaos test's worker processes share the test database: it needs PostgreSQL",
    ),
]


@pytest.fixture
def redis_db():
    import django_rq

    redis = django_rq.get_connection("send")
    django_rq.get_queue("send").empty()
    yield redis
    django_rq.get_queue("send").empty()


def test_killed_workers_and_a_redis_flush_never_send_twice_and_lose_nobody(
    transactional_audit, support_sam, comms_cleo, incident, settings, redis_db, tmp_path
):
    settings.SWEEP_STALE_SECONDS = 1  # the sweeper re-enqueues a stalled campaign after 1 s
    seed = int(time.time())
    rng = random.Random(seed)
    config = ChaosConfig(seed=seed)
    segment, version, people = prepare(
        incident=incident,
        author=support_sam,
        approver=comms_cleo,
        recipients=config.recipients,
        tag=str(seed),
    )
    stub = PostmarkStub().start()
    app_name = f"amends-chaos-{seed}"
    suppressed = script_stub(stub, people, config, rng, by=Actor.system("tests"))
    env = worker_env(
        database_url=database_url(),
        redis_url=settings.REDIS_URL,
        stub_url=stub.url,
        config=config,
        app_name=app_name,
    )
    pool = WorkerPool(config.workers, env, tmp_path / "workers.log")

    def launch() -> Campaign:
        return services.campaign_launch(
            version=version,
            segment=segment,
            by=Actor.for_user(support_sam),
            rate_limit=10_000,  # the stub takes whatever comes; the rate limit is tested elsewhere
            batch_size=config.batch_size,
        )

    try:
        campaign, result = run_chaos(
            campaign_launch=launch,
            stub=stub,
            pool=pool,
            config=config,
            rng=rng,
            flush=redis_db.flushdb,
            app_name=app_name,
        )
        check(campaign, stub, result, segment_size=len(people), suppressed=suppressed)
    finally:
        stub.stop()
        # The killed workers' jobs stay in rq's started registry until they expire; a
        # later test's worker would then report them as abandoned failures of its own.
        redis_db.flushdb()
    summary = result.summary()
    print(f"chaos (seed {seed}): {summary}")
    assert not result.violations, (seed, summary, result.violations, pool.tail())

    assert result.kills >= 10 and result.flushes == 1 and result.window_kills >= 3
    # At least one kill came after the stub's 200 and before the worker recorded it (the
    # stub kills at once, from its horse pidfds: in development runs, all of them did).
    assert result.window_hits >= 1
    assert result.duplicates == {}  # the stub saw nobody twice
    counts = result.counts
    assert set(counts) <= {"sent", "failed", "suppressed", "uncertain"}
    assert counts["suppressed"] == config.suppressed
    # Refused addresses fail, unless a kill took the refusal's answer with it (then uncertain).
    assert counts["failed"] <= config.rejected
    assert sum(counts.values()) == len(people) == config.recipients
    # Uncertain: at most the messages handed to the ESP and not recorded when a kill came.
    assert counts.get("uncertain", 0) <= len(result.in_flight)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
