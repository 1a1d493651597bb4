"""Chaos, longer: many runs of tests/chaos.py's crash-and-recover scenario.

    python bench/chaos.py --runs 20 [--recipients 5000] [--workers 2] [--seed 1]

Each run opens an incident of its own with `--recipients` people (a send log,
then audience_freeze), approves an apology and launches it through `--workers`
real `manage.py rqworker send` processes against the Postmark stub (anymail's
real backend), while every worker is SIGKILLed in `--kill-rounds` rounds (half
of them from inside the stub right after it answered 200, before the worker
recorded the answer) and the Redis database is flushed `--flushes` times. The
sweeper runs every half second, as cron would, with short leases.

It reports, per run and in total: kills, flushes, recipients,
sent/failed/suppressed/uncertain, messages in flight at the kills (handed to
the ESP, not recorded), duplicates seen by the stub (must be 0), and the time
from the last kill or flush to a completed campaign. It exits non-zero when an
invariant breaks (tests/chaos.py `check`).

Its own database (`amends_bench_chaos`, or BENCH_CHAOS_DATABASE_URL), migrated
here, and its own Redis database (db 14, or BENCH_CHAOS_REDIS_URL), which it
FLUSHes: never point it at a Redis database someone else uses.
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA, ensure_database, machine, migrate  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/amends_bench_chaos"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
COLUMNS = {  # summary key: heading
    "kills": "kills",
    "window_kills": "at a 200",
    "window_hits": "…landed",
    "flushes": "flushes",
    "recipients": "recipients",
    "sent": "sent",
    "failed": "failed",
    "suppressed": "suppressed",
    "uncertain": "uncertain",
    "in_flight": "in flight",
    "taken_in_flight": "…taken",
    "requeued": "requeued",
    "duplicates": "duplicates",
    "resume_seconds": "resume s",
    "recovery_seconds": "recover s",
    "seconds": "run s",
}
WIDTH = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-rounds", type=int, default=5)
    parser.add_argument("--flushes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None, help="default: the current time")
    args = parser.parse_args()

    url = os.environ.get("BENCH_CHAOS_DATABASE_URL", DEFAULT_URL)
    redis_url = os.environ.get("BENCH_CHAOS_REDIS_URL", DEFAULT_REDIS)
    DATA.mkdir(parents=True, exist_ok=True)
    ensure_database(url)
    migrate(url)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        AMENDS_NO_BOOTSTRAP="1",
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        SWEEP_STALE_SECONDS="1",  # the sweeper re-enqueues a stalled campaign after 1 s
    )
    import django

    django.setup()

    from tests.chaos import ChaosConfig

    seed = args.seed if args.seed is not None else int(time.time())
    base = ChaosConfig(
        recipients=args.recipients,
        workers=args.workers,
        kill_rounds=args.kill_rounds,
        window_rounds=(args.kill_rounds + 1) // 2,
        flushes=args.flushes,
        timeout=max(120.0, args.recipients / 20),
    )
    print(f"{machine()}; seed {seed}; {args.runs} runs of {args.recipients:,} recipients")
    print(" run " + " ".join(f"{h:>{WIDTH}}" for h in COLUMNS.values()))
    totals = {c: 0.0 for c in COLUMNS}
    worst_recovery, failures = 0.0, 0
    for run in range(1, args.runs + 1):
        result = one_run(base, seed + run, redis_url)
        summary = result.summary()
        print(f"{run:4} " + " ".join(f"{summary[c]:>{WIDTH}}" for c in COLUMNS), flush=True)
        for column in COLUMNS:
            totals[column] += summary[column]
        worst_recovery = max(worst_recovery, result.recovery_seconds)
        if result.violations:
            failures += 1
            print("      VIOLATIONS:", "; ".join(result.violations[:5]), flush=True)
    print("total" + " ".join(f"{round(totals[c], 1):>{WIDTH}}" for c in COLUMNS))
    print(
        f"recovery: mean {totals['recovery_seconds'] / args.runs:.1f} s, "
        f"worst {worst_recovery:.1f} s; runs with a broken invariant: {failures}"
    )
    if failures:
        raise SystemExit(1)


def one_run(base, seed: int, redis_url: str):
    from dataclasses import replace

    import django_rq
    from django.contrib.auth import get_user_model

    from campaigns import services
    from incidents import services as incident_services
    from incidents.actors import Actor
    from incidents.roles import COMMS, SUPPORT
    from tests.chaos import check, prepare, run_chaos, script_stub
    from tests.chaos_workers import WorkerPool, database_url, worker_env
    from tests.esp_stub import PostmarkStub

    config = replace(base, seed=seed)
    rng = random.Random(seed)
    setup = Actor.system("bench")
    users = {}
    for name, role in (("chaos_support", SUPPORT), ("chaos_comms", COMMS)):
        users[role] = get_user_model().objects.filter(username=name).first() or (
            incident_services.user_create_with_role(
                username=name, email=f"{name}@amends.example", password=None, role=role, by=setup
            )
        )
    incident = incident_services.incident_open(
        by=Actor.for_user(users[SUPPORT]),
        title=f"Chaos run {seed}",
        summary="bench/chaos.py",
        original_template=f"chaos-{seed}",
        original_subject="A message that went to the wrong people",
        severity="SEV3",
    )
    segment, version, people = prepare(
        incident=incident,
        author=users[SUPPORT],
        approver=users[COMMS],
        recipients=config.recipients,
        tag=str(seed),
    )
    redis = django_rq.get_connection("send")
    redis.flushdb()  # this bench's own database: nothing from an earlier run
    stub = PostmarkStub().start()
    try:
        suppressed = script_stub(stub, people, config, rng, by=setup)
        app_name = f"amends-chaos-bench-{seed}"
        env = worker_env(
            database_url=database_url(),
            redis_url=redis_url,
            stub_url=stub.url,
            config=config,
            app_name=app_name,
        )
        pool = WorkerPool(config.workers, env, DATA / f"chaos-workers-{seed}.log")

        def launch():
            return services.campaign_launch(
                version=version,
                segment=segment,
                by=Actor.for_user(users[SUPPORT]),
                rate_limit=10_000,
                batch_size=config.batch_size,
            )

        campaign, result = run_chaos(
            campaign_launch=launch,
            stub=stub,
            pool=pool,
            config=config,
            rng=rng,
            flush=redis.flushdb,
            app_name=app_name,
        )
        check(campaign, stub, result, segment_size=len(people), suppressed=suppressed)
    finally:
        stub.stop()
    if not result.violations:
        (DATA / f"chaos-workers-{seed}.log").unlink(missing_ok=True)
    return result


if __name__ == "__main__":
    main()
