"""Benchmark: sending a campaign end to end on real rq workers, against a bare send loop.

    python bench/bench_send.py overhead [--people 200000] [--workers 2] [--concurrency 8]
    python bench/bench_send.py latency  [--people 100000] [--workers 2] [--concurrency 32]
    python bench/bench_send.py steps    [--people 20000] [--bare 5000] [--concurrency 8]

Each run freezes PEOPLE people in a fresh database of its own (amends_bench_send),
starts WORKERS `manage.py rqworker send` processes (rq's forking worker, as in
production) on Redis db 11 (BENCH_REDIS_URL), launches the campaign and times
from the moment its jobs are queued to the last delivery recorded (the campaign
`completed`). Then it checks that every person got exactly one message.

- overhead: anymail's test backend (anymail.backends.test.EmailBackend) stands
  in for the ESP, so what is measured is our own cost per message. In the same
  run, a bare loop renders, builds and sends the same messages through the same
  backend with no bookkeeping (no claims, no outcome writes, no rate limit, no
  threads). The per-message cost is split into render, build and send (timed
  in the bare loop) and bookkeeping (the workers' CPU per message minus those).
  Targets: ≥ 1,700 messages/s for two workers; per worker ≥ 0.6× the bare loop.
- latency: anymail's real Postmark backend against tests/esp_stub.py with
  DELAY (100 ms) added to every API call. Target: ≥ 400 messages/s.

- steps: one send job run in this process over BARE messages, with a CPU timer
  on each step (render, build, send, hand-over, recording, tokens, claims).

Both report the workers' peak RSS (forked work horses included; target < 200 MB)
and the number of rq jobs per million recipients (target ≤ 2,000).
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA, PYTHON, ROOT, BackendCPU, machine  # noqa: E402
from bench.send_data import (  # noqa: E402
    DEFAULT_URL,
    fresh_database,
    load,
    make_people,
    redis_url,
    setup_django,
)

TEST_BACKEND = "anymail.backends.test.EmailBackend"
POSTMARK_BACKEND = "anymail.backends.postmark.EmailBackend"


# --- CPU of other processes ---------------------------------------------------------------


def _workers_cpu(workers: list[subprocess.Popen]) -> float:
    """CPU seconds of the workers so far, their reaped work horses included (/proc)."""
    total = 0
    for worker in workers:
        with open(f"/proc/{worker.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU-seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def _redis_cpu(connection) -> float:
    info = connection.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


# --- The bare loop ----------------------------------------------------------------------------


def bare_loop(campaign, limit: int) -> dict:
    """Render, build and send `limit` of the campaign's messages, timing each step; nothing else."""
    from django.core import mail
    from django.core.mail import mailers

    from campaigns.models import Delivery
    from campaigns.sending.message import Composer

    deliveries = list(
        Delivery.objects.filter(campaign=campaign).select_related("person").order_by("id")[:limit]
    )
    composer = Composer(campaign)
    backend = mailers[campaign.mailer]
    backend.open()
    render = build = send = 0.0
    clock = time.process_time  # CPU time, comparable with the workers' rusage
    started, wall = clock(), time.perf_counter()
    for delivery in deliveries:
        t0 = clock()
        rendered = composer.render(delivery)
        t1 = clock()
        message = composer.build(backend, delivery, rendered)
        t2 = clock()
        backend.send_messages([message])
        t3 = clock()
        render, build, send = render + t1 - t0, build + t2 - t1, send + t3 - t2
        if len(getattr(mail, "outbox", ())) >= campaign.batch_size:
            # As a work horse's would: its outbox ends with its job. The test backend finds
            # each message's id by a linear search of the outbox, so its length is a cost.
            mail.outbox = []
    cpu, seconds = clock() - started, time.perf_counter() - wall
    backend.close()
    n = len(deliveries)
    return {
        "messages": n,
        "seconds": seconds,
        "rate": n / seconds,
        "cpu_us": cpu / n * 1e6,
        "render_us": render / n * 1e6,
        "build_us": build / n * 1e6,
        "send_us": send / n * 1e6,
    }


# --- One job in this process, step by step ----------------------------------------------------


def steps(campaign, messages: int) -> None:
    """Run one send job over the first `messages` deliveries here, with a CPU timer on each step.

    Each step's `time.thread_time` is summed over the threads that run it, so
    the figures are CPU per message, whatever the load; the job's own process
    CPU is the whole (the writer threads' work is in it but not in a step).
    """
    import threading
    from collections import Counter

    import campaigns.sending.claims as claims
    import campaigns.sending.recorder as recorder
    import campaigns.sending.worker as worker
    from campaigns.jobs import send_batch
    from campaigns.models import Delivery
    from campaigns.sending.message import Composer

    cpu: Counter[str] = Counter()
    lock = threading.Lock()

    def timed(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                with lock:
                    cpu[label] += time.thread_time() - started

        setattr(owner, name, wrapper)

    timed(Composer, "render", "render")
    timed(Composer, "build", "build")
    timed(worker._BatchRun, "_send_one", "render + build + send")
    # Inline (what this mode runs) builds before the hand-over, and sends with _send_one.
    timed(worker._BatchRun, "_prepare", "render + build + send")
    timed(claims, "hand_over_many", "hand-over markers (writer thread)")
    timed(worker._BatchRun, "_record", "answer handed to the recorder")
    timed(recorder, "write_and_audit", "answers written (writer thread)")
    timed(worker._BatchRun, "_take_tokens", "rate tokens")
    timed(worker, "claim_chunk", "claim (with the rows and suppressions)")
    timed(worker._BatchRun, "_drop_unsendable", "suppressed or removed since launch")
    ids = Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True)
    first, last = ids[0], ids[messages - 1]
    started = time.process_time()
    result = send_batch(campaign.pk, first, last)
    total = time.process_time() - started
    print(f"one job in this process: {result}, {total / messages * 1e6:.0f} µs CPU a message")
    cpu["send (the ESP backend)"] = cpu["render + build + send"] - cpu["render"] - cpu["build"]
    for label, seconds in cpu.most_common():
        print(f"  {label:<40} {seconds / messages * 1e6:6.0f} µs")


# --- Workers ----------------------------------------------------------------------------------


def start_workers(count: int, env: dict, worker_class: str = "") -> list[subprocess.Popen]:
    DATA.mkdir(parents=True, exist_ok=True)
    log = open(DATA / "bench_send_workers.log", "w")  # noqa: SIM115 (lives as long as they do)
    return [
        subprocess.Popen(
            [PYTHON, "manage.py", "rqworker", "send", "--name", f"bench-send-{i}-{os.getpid()}"]
            + (["--worker-class", worker_class] if worker_class else []),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen]) -> list:
    """SIGTERM (rq's warm shutdown) each, and its rusage: its work horses are included."""
    usages = []
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        _, _, usage = os.wait4(worker.pid, 0)
        worker.returncode = 0
        usages.append(usage)
    return usages


def main(argv=None) -> None:  # noqa: C901 (a script: one run, top to bottom)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("overhead", "latency", "steps"))
    parser.add_argument("--people", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument(
        "--worker-class",
        default="",
        help="rq's worker class, e.g. rq.worker.SimpleWorker (no fork)",
    )
    parser.add_argument("--delay", type=float, default=0.1, help="latency: seconds per ESP call")
    parser.add_argument("--rate-limit", type=int, default=100_000)
    parser.add_argument(
        "--batch-size", type=int, help="deliveries per job (default: SEND_BATCH_SIZE)"
    )
    parser.add_argument("--bare", type=int, default=20_000, help="overhead: bare-loop messages")
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args(argv)
    # A SIGTERM (timeout, Ctrl-C's cousin) still stops the workers this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    overhead = args.mode in ("overhead", "steps")
    people = args.people or {"overhead": 200_000, "latency": 100_000, "steps": 20_000}[args.mode]
    concurrency = args.concurrency or (8 if overhead else 32)  # 8: SEND_CONCURRENCY default

    print(f"machine: {machine()}")
    fresh_database(args.url)
    stub = None
    mail_env = {"MAIL_BACKEND": TEST_BACKEND}
    if not overhead:
        import tests.esp_stub as esp_stub

        class Server(esp_stub.ThreadingHTTPServer):
            # Postmark keeps HTTPS connections alive and anymail reuses them (one
            # requests session per sending thread); the stub speaks HTTP/1.0 to the
            # tests, which closes every connection. A listen backlog of 5 would drop
            # connections when dozens of threads connect at once.
            request_queue_size = 1024

            def __init__(self, address, handler):
                handler.protocol_version = "HTTP/1.1"
                super().__init__(address, handler)

        esp_stub.ThreadingHTTPServer = Server
        stub = esp_stub.PostmarkStub().start()
        stub.delay = args.delay
        mail_env = {
            "MAIL_BACKEND": POSTMARK_BACKEND,
            "POSTMARK_SERVER_TOKEN": esp_stub.TOKEN,
            "POSTMARK_API_URL": stub.url,
        }
    worker_env = dict(
        os.environ,
        DATABASE_URL=args.url,
        REDIS_URL=redis_url(),
        AMENDS_NO_BOOTSTRAP="1",
        SEND_CONCURRENCY=str(concurrency),
        **mail_env,
    )
    worker_env.setdefault("AMENDS_VAR_DIR", str(DATA / "var"))
    setup_django(args.url, redis_url(), **mail_env)
    import django_rq
    from django.db import connection
    from rq import Worker

    from campaigns.models import Campaign, Delivery
    from campaigns.services import sending as sending_services
    from incidents.actors import Actor

    send_queue = django_rq.get_queue("send")
    send_queue.empty()

    data = make_people(people)
    print(f"setup: {people:,} people frozen in {data['freeze_seconds']:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")

    if args.mode == "steps":
        from django.conf import settings

        settings.SEND_CONCURRENCY = concurrency
        campaign = sending_services.campaign_launch(
            version=data["version"],
            segment=data["segment"],
            by=Actor.for_user(data["support"]),
            rate_limit=args.rate_limit,
            batch_size=people,  # one job: nobody else takes its rows
        )
        send_queue.empty()
        steps(campaign, min(people, args.bare))
        return
    workers = start_workers(args.workers, worker_env, args.worker_class)
    try:
        deadline = time.monotonic() + 60
        while len(Worker.all(queue=send_queue)) < args.workers:
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise SystemExit("the workers did not start: see bench/data/bench_send_workers.log")
            time.sleep(0.2)
        print(
            f"{args.workers} workers up ({'anymail test backend' if overhead else f'Postmark stub, +{args.delay * 1000:.0f} ms per call'}), "
            f"SEND_CONCURRENCY={concurrency}; load average {load()}",
            flush=True,
        )
        launched = time.perf_counter()
        campaign = sending_services.campaign_launch(
            version=data["version"],
            segment=data["segment"],
            by=Actor.for_user(data["support"]),
            rate_limit=args.rate_limit,
            batch_size=args.batch_size,
        )
        queued_at = time.perf_counter()
        backends = BackendCPU(connection.settings_dict["NAME"])
        redis_before = _redis_cpu(send_queue.connection)
        workers_before = _workers_cpu(workers)  # not their start-up: Django's imports
        machine_before, own_before = _machine_cpu(), time.process_time()
        status, load_during = None, []
        while True:
            time.sleep(0.1)
            with connection.cursor() as cursor:
                backends.poll(cursor)
            status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True)[0]
            if status != Campaign.Status.RUNNING:
                break
            if stub is not None:
                with stub.lock:
                    stub.requests.clear()  # the stub keeps every request; only counts matter
            if len(load_during) < (time.perf_counter() - queued_at) / 5:
                load_during.append(load())
        done_at = time.perf_counter()
        machine_after, own_cpu = _machine_cpu(), time.process_time() - own_before
        pg_cpu = backends.seconds
        redis_cpu = _redis_cpu(send_queue.connection) - redis_before
        time.sleep(0.5)  # the last work horses are reaped
        worker_cpu = _workers_cpu(workers) - workers_before
    finally:
        usages = stop_workers(workers)
    seconds = done_at - queued_at
    from incidents.models import AuditEntry

    jobs = AuditEntry.objects.get(action="campaign.launched").after["batches"]
    counts = dict(
        Delivery.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status")
        .annotate(n=__import__("django.db.models", fromlist=["Count"]).Count("id"))
    )
    sent = counts.get(Delivery.Status.SENT, 0)
    rate = sent / seconds
    peak_rss = max(u.ru_maxrss for u in usages) / 1024

    print(
        f"launch: {jobs:,} jobs queued in {queued_at - launched:.2f} s (one per batch of {campaign.batch_size})"
    )
    print(f"campaign {status}; deliveries {counts}")
    if stub is not None:
        twice = sum(1 for n in stub.accepted.values() if n > 1)
        print(f"the stub took {stub.taken:,} messages; people who got two: {twice}")
    print(f"load average while sending: {', '.join(load_during) or load()}")
    print(
        f"sent {sent:,} in {seconds:.2f} s: {rate:,.0f} messages/s "
        f"({rate / args.workers:,.0f} per worker)"
    )
    print(f"jobs per 1M recipients: {jobs * 1_000_000 / max(1, people):,.0f}")
    print(f"workers' peak RSS (work horses included): {peak_rss:.0f} MB")
    print(
        f"CPU per message: workers {worker_cpu / max(1, sent) * 1e6:.0f} µs, "
        f"PostgreSQL {pg_cpu / max(1, sent) * 1e6:.0f} µs, Redis {redis_cpu / max(1, sent) * 1e6:.0f} µs, "
        f"this process{' (the ESP stub)' if stub is not None else ''} {own_cpu / max(1, sent) * 1e6:.0f} µs"
    )
    busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
    print(f"the machine's CPUs were {busy:.0%} busy while sending")
    if overhead:
        bare = bare_loop(campaign, min(args.bare, sent))
        per_message = worker_cpu / max(1, sent) * 1e6
        own = bare["render_us"] + bare["build_us"] + bare["send_us"]
        print(
            f"bare loop: {bare['messages']:,} messages in {bare['seconds']:.2f} s, "
            f"{bare['rate']:,.0f} messages/s (one process, one thread; "
            f"{bare['cpu_us']:.0f} µs CPU a message)"
        )
        print(
            f"per worker / bare: {rate / args.workers / bare['rate']:.2f}×, "
            f"CPU a message bare / worker: {bare['cpu_us'] / per_message:.2f}×  "
            f"(target ≥ 0.6×); all workers: {rate:,.0f}/s (target ≥ 1,700)"
        )
        print(
            f"per message: render {bare['render_us']:.0f} µs, build {bare['build_us']:.0f} µs, "
            f"send {bare['send_us']:.0f} µs, bookkeeping {per_message - own:.0f} µs "
            f"(worker CPU {per_message:.0f} µs) + PostgreSQL {pg_cpu / max(1, sent) * 1e6:.0f} µs"
        )
    print(f"load average at the end: {load()}")
    send_queue.empty()
    if stub is not None:
        stub.stop()


if __name__ == "__main__":
    main()
