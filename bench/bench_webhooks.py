"""Webhook ingest through a real HTTP server: gunicorn + Django + anymail on PostgreSQL, rq applying.

    .venv/bin/python bench/bench_webhooks.py                        # the full run (docs/performance.md)
    .venv/bin/python bench/bench_webhooks.py --batched 20000 --single 5000   # smaller

What it does, on a database of its own (`amends_bench_webhooks`, dropped and created):
1. Seeds one incident with `--batched + --single` deliveries recorded as sent (ESP message ids
   `bench-<n>`), through the services for users, incident, version and approval, and in bulk
   for people and deliveries.
2. Starts gunicorn (gthread, or `--worker-class sync`) on 127.0.0.1 and one
   `rqworker webhooks` on Redis (db 7).
3. Batched, like SendGrid: `--batch` events per request (a "delivered" for each of the first
   `--batched` deliveries, and an "open" for every fifth), posted by `--clients` processes of
   `--threads` keep-alive connections each. Then one event per request, like Postmark: a
   "Delivery" for each of the next `--single` deliveries.
4. For each phase: events/s (events stored ÷ wall time from the first request to the last
   answer), then the lag of every event from `received_at` to `applied_at`, and the time until
   the last one is applied. Checks every delivery of the phase is `delivered`.
"""

import argparse
import base64
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DATA, PYTHON, ROOT, machine, psql  # noqa: E402

DB_URL = os.environ.get(
    "BENCH_WEBHOOKS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/amends_bench_webhooks"
)
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
SECRET = "bench:webhook-secret"
AUTH = "Basic " + base64.b64encode(SECRET.encode()).decode()


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=DB_URL,
        REDIS_URL=REDIS,
        WEBHOOK_SECRET=SECRET,
        DEBUG="0",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789abcdef",
        LOG_LEVEL="WARNING",
        AMENDS_NO_BOOTSTRAP="1",
        AMENDS_VAR_DIR=str(DATA / "var"),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def fresh_database() -> None:
    parts = urlsplit(DB_URL)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    psql(admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin, "-c", f'CREATE DATABASE "{name}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input", "-v0", "--skip-checks"],
        cwd=ROOT,
        env=server_env(),
        check=True,
    )


def seed(total: int) -> tuple[str, int]:
    """Deliveries 1…total recorded as sent; returns (incident reference, first delivery id)."""
    os.environ.update(server_env())
    import django

    django.setup()
    from django.utils import timezone

    from bench.common import approved_version, staff_and_incident
    from campaigns.models import Campaign, Delivery
    from incidents.models import AffectedPerson
    from incidents.services.audience import default_segment

    support, comms, incident = staff_and_incident(
        title="Webhook bench",
        summary="Bench",
        original_template="t",
        original_subject="s",
        severity="SEV2",
    )
    segment = default_segment(incident)
    now = timezone.now()
    AffectedPerson.objects.bulk_create(
        [
            AffectedPerson(
                incident=incident,
                address=f"p{i}@bench.example",
                original_address=f"p{i}@bench.example",
                segment=segment,
                message_ids=[],
            )
            for i in range(total)
        ],
        batch_size=5000,
    )
    version = approved_version(
        segment=segment,
        support=support,
        comms=comms,
        sender_name="Care",
        sender_address="care@bench.example",
        fallback_locale="en",
        content={"en": {"subject": "Sorry", "text": "Sorry {{ verification_code }}", "html": ""}},
    )
    campaign = Campaign.objects.create(
        incident=incident,
        segment=segment,
        version=version,
        content_hash=version.content_hash,
        status=Campaign.Status.COMPLETED,
        launched_at=now,
        finished_at=now,
    )
    people = AffectedPerson.objects.filter(incident=incident).order_by("id")
    Delivery.objects.bulk_create(
        [
            Delivery(
                campaign=campaign,
                incident=incident,
                person_id=pk,
                address=address,
                status=Delivery.Status.SENT,
                esp_message_id=f"bench-{n}",
                sent_at=now,
                attempts=1,
            )
            for n, (pk, address) in enumerate(people.values_list("id", "address"))
        ],
        batch_size=5000,
    )
    psql(DB_URL, "-c", "VACUUM ANALYZE")
    first = Delivery.objects.order_by("id").values_list("id", flat=True).first()
    return incident.reference, first


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_services(args) -> tuple[subprocess.Popen, subprocess.Popen, int]:
    env = server_env()
    subprocess.run(["redis-cli", "-u", REDIS, "FLUSHDB"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    log = open(DATA / "bench-webhooks-server.log", "w")  # noqa: SIM115 (the servers' lifetime)
    server = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            args.worker_class,
            "--workers",
            str(args.workers),
            "--threads",
            str(args.server_threads),
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    worker = subprocess.Popen(
        [PYTHON, "manage.py", "rqworker", "webhooks", "--worker-class", "rq.SimpleWorker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    # gunicorn accepts connections before its workers have loaded Django: warm every worker
    # up (an empty SendGrid batch stores nothing) so the timed phases measure requests only.
    post_all(port, "/webhooks/sendgrid/tracking/", [b"[]"] * 200, args.clients, args.threads)
    return server, worker, port


# --- Payloads -------------------------------------------------------------------------------


def sendgrid_batches(first: int, count: int, batch: int, reference: str, t0: int) -> list[bytes]:
    events = []
    for n in range(count):
        pk = first + n
        base = {
            "email": f"p{n}@bench.example",
            "smtp-id": f"<bench-{n}>",
            "sg_message_id": f"bench-{n}.filter",
            "category": [reference],
            "delivery_id": str(pk),
            "incident": reference,
        }
        events.append(base | {"event": "delivered", "timestamp": t0 + 1, "sg_event_id": f"d-{n}"})
        if n % 5 == 0:
            events.append(base | {"event": "open", "timestamp": t0 + 60, "sg_event_id": f"o-{n}"})
    return [json.dumps(events[i : i + batch]).encode() for i in range(0, len(events), batch)]


def postmark_singles(first: int, start: int, count: int, reference: str) -> list[bytes]:
    return [
        json.dumps(
            {
                "RecordType": "Delivery",
                "ServerID": 1,
                "MessageStream": "outbound",
                "MessageID": f"bench-{n}",
                "Recipient": f"p{n}@bench.example",
                "Tag": reference,
                "DeliveredAt": "2026-11-28T10:00:00Z",
                "Details": "250 OK",
                "Metadata": {"delivery_id": str(first + n), "incident": reference},
            }
        ).encode()
        for n in range(start, start + count)
    ]


def _client(port: int, path: str, bodies: list[bytes], threads: int, results) -> None:
    errors = []
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def run():
        conn = HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": AUTH}
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            for _attempt in range(3):
                try:
                    conn.request("POST", path, body, headers)
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        errors.append(response.status)
                    break
                except (OSError, ConnectionError):
                    conn.close()
                    conn = HTTPConnection("127.0.0.1", port, timeout=60)
        conn.close()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    results.put(errors)


def post_all(port: int, path: str, bodies: list[bytes], clients: int, threads: int) -> float:
    """Post `bodies` from `clients` processes; the wall time of the whole phase."""
    results = multiprocessing.Queue()
    shares = [bodies[i::clients] for i in range(clients)]
    procs = [
        multiprocessing.Process(target=_client, args=(port, path, share, threads, results))
        for share in shares
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    errors = [e for _ in procs for e in results.get()]
    for proc in procs:
        proc.join()
    seconds = time.monotonic() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed: {sorted(set(errors))}")
    return seconds


def lag_report(esp: str, timeout: float) -> dict:
    """Wait until every event of `esp` is applied; lag from received to applied."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = psql(
            DB_URL,
            "-tAc",
            f"SELECT count(*) FROM campaigns_deliveryevent WHERE esp = '{esp}' "
            "AND applied_at IS NULL",
            capture=True,
        )
        if int(left) == 0:
            break
        time.sleep(0.5)
    row = psql(
        DB_URL,
        "-tAc",
        "SELECT count(*), "
        "round(extract(epoch FROM percentile_cont(0.5) WITHIN GROUP "
        "(ORDER BY applied_at - received_at))::numeric, 2), "
        "round(extract(epoch FROM percentile_cont(0.99) WITHIN GROUP "
        "(ORDER BY applied_at - received_at))::numeric, 2), "
        "round(extract(epoch FROM max(applied_at - received_at))::numeric, 2), "
        "count(*) FILTER (WHERE applied_at IS NULL) "
        f"FROM campaigns_deliveryevent WHERE esp = '{esp}'",
        capture=True,
    ).strip()
    stored, p50, p99, worst, pending = row.split("|")
    return {
        "stored": int(stored),
        "lag_p50_s": float(p50 or 0),
        "lag_p99_s": float(p99 or 0),
        "lag_max_s": float(worst or 0),
        "pending": int(pending),
    }


def delivered(first_id: int, count: int) -> int:
    """Deliveries first_id … first_id + count - 1 that are `delivered` (ids are consecutive)."""
    return int(
        psql(
            DB_URL,
            "-tAc",
            "SELECT count(*) FROM campaigns_delivery WHERE status = 'delivered' "
            f"AND id BETWEEN {first_id} AND {first_id + count - 1}",
            capture=True,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batched", type=int, default=100_000, help="deliveries, SendGrid phase")
    parser.add_argument("--single", type=int, default=30_000, help="deliveries, Postmark phase")
    parser.add_argument("--batch", type=int, default=500, help="events per SendGrid request")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn processes")
    parser.add_argument("--server-threads", type=int, default=4)
    parser.add_argument(
        "--worker-class",
        default="gthread",
        help="gunicorn's: gthread (keep-alive, a thread pool a process) or sync (one request "
        "at a time a process, a new connection a request)",
    )
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per client")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)

    print(f"machine: {machine()}")
    fresh_database()
    reference, first = seed(args.batched + args.single)
    server, worker, port = start_services(args)
    report = {"machine": machine(), "args": vars(args)}
    try:
        t0 = int(time.time())
        bodies = sendgrid_batches(first, args.batched, args.batch, reference, t0)
        events = args.batched + (args.batched + 4) // 5
        seconds = post_all(port, "/webhooks/sendgrid/tracking/", bodies, args.clients, args.threads)
        last_answer = time.monotonic()
        lag = lag_report("SendGrid", timeout=300)
        report["sendgrid"] = {
            "events": events,
            "requests": len(bodies),
            "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds),
            "all_applied_after_last_answer_s": round(time.monotonic() - last_answer, 2),
            "delivered": delivered(first, args.batched),
            **lag,
        }
        print(json.dumps(report["sendgrid"]), flush=True)

        bodies = postmark_singles(first, args.batched, args.single, reference)
        seconds = post_all(port, "/webhooks/postmark/tracking/", bodies, args.clients, args.threads)
        last_answer = time.monotonic()
        lag = lag_report("Postmark", timeout=300)
        report["postmark"] = {
            "events": args.single,
            "requests": len(bodies),
            "seconds": round(seconds, 2),
            "events_per_s": round(args.single / seconds),
            "all_applied_after_last_answer_s": round(time.monotonic() - last_answer, 2),
            "delivered": delivered(first + args.batched, args.single),
            **lag,
        }
        print(json.dumps(report["postmark"]), flush=True)
    finally:
        for proc in (server, worker):
            proc.send_signal(signal.SIGTERM)
        for proc in (server, worker):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    (DATA / "bench-webhooks.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
