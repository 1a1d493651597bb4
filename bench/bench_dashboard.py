"""Dashboard at scale: 1M affected people, their deliveries and ESP events, on PostgreSQL.

    .venv/bin/python bench/bench_dashboard.py                 # 1,000,000 people, 3 events each
    .venv/bin/python bench/bench_dashboard.py --people 20000  # a quick run while developing
    .venv/bin/python bench/bench_dashboard.py --reuse         # keep the data of the last run

Uses a database of its own (`amends_bench_dashboard`, or BENCH_DATABASE_URL), which it
creates, migrates and fills with INSERT … SELECT generate_series. Then, in this process,
through Django's test client (the whole stack: middleware, session, permissions,
templates), it times:

- the refresh: compute_dashboard over everything, what the queued job does;
- the dashboard page and its live fragment with a fresh snapshot (the steady state);
- the same page with a stale snapshot (claims a refresh and queues a job on Redis);
- the follow-up queue, the unconfirmed list and the completion count at this size.

Each request is timed --requests times after one warm-up; p50 and p95 are reported.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, ensure_database, machine, migrate, psql  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/amends_bench_dashboard"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def _setup_django(url: str) -> None:
    os.environ.update(
        DATABASE_URL=url,
        REDIS_URL=REDIS_URL,
        AMENDS_NO_BOOTSTRAP="1",
        DEBUG="0",  # no query log kept in memory, as in production
        SECRET_KEY="bench-dashboard-only-not-a-secret-0123456789abcdef",
        ALLOWED_HOSTS="testserver,127.0.0.1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    os.environ.setdefault("AMENDS_VAR_DIR", str(ROOT / "bench" / "data" / "var"))
    import django

    django.setup()


# --- Data ------------------------------------------------------------------------------------

PEOPLE_SQL = """
INSERT INTO incidents_affectedperson
  (incident_id, address, original_address, customer_id, locale, metadata, latest_status,
   message_ids, message_count, first_sent_at, source, added_at, removed_reason, segment_id,
   contact_status, contact_method, contacted_at, contact_note, contact_updated_at)
SELECT %(incident)s, 'person' || g || '@example.com', 'Person' || g || '@Example.com',
       'C' || g, (ARRAY['en','de','fr','nl'])[1 + g %% 4], '{}'::jsonb, 'delivered',
       jsonb_build_array('msg-' || g), 1, %(t0)s, 'query', %(t0)s, '',
       (ARRAY[%(seg_a)s, %(seg_b)s, %(seg_c)s]::bigint[])[1 + g %% 3],
       s.status, s.method,
       CASE WHEN s.status = 'contacted' THEN %(t0)s + (g %% 7200) * interval '1 second' END,
       CASE WHEN s.status = 'waived' THEN 'Closed account' ELSE '' END,
       CASE WHEN s.status <> 'pending' THEN %(t0)s + (g %% 7200) * interval '1 second' END
FROM generate_series(1, %(n)s) g,
LATERAL (SELECT CASE
    WHEN g %% 100 < 70 THEN 'contacted' WHEN g %% 100 < 75 THEN 'contacted'
    WHEN g %% 100 < 83 THEN 'unreachable' WHEN g %% 100 < 85 THEN 'waived'
    ELSE 'pending' END AS status,
  CASE WHEN g %% 100 < 70 THEN 'email' WHEN g %% 100 < 75 THEN 'phone' ELSE '' END AS method) s
"""

# Deliveries: contacted by email → delivered; unreachable → bounced (hard/soft); pending →
# sent (a third of them long ago: unconfirmed); phone and waived people → failed.
DELIVERIES_SQL = """
INSERT INTO campaigns_delivery
  (campaign_id, incident_id, person_id, address, locale, status, attempts, esp_message_id,
   error, sent_at, created_at, updated_at, verification_code, resend, bounce_kind,
   delivered_at, last_event_at, opened, clicked, soft_bounces)
SELECT c.campaign, p.incident_id, p.id, p.address, p.locale, d.status, 1,
       CASE WHEN d.status = 'failed' THEN '' ELSE 'esp-' || p.id END, '',
       CASE WHEN d.status = 'failed' THEN NULL
            WHEN d.status = 'sent' AND p.id %% 3 = 0 THEN now() - interval '3 hours'
            ELSE %(t0)s + (p.id %% 7200) * interval '1 second' END,
       %(t0)s, %(t0)s, upper(substr(md5(p.id::text), 1, 16)), false,
       CASE WHEN d.status = 'bounced' THEN (CASE WHEN p.id %% 2 = 0 THEN 'hard' ELSE 'soft' END)
            ELSE '' END,
       CASE WHEN d.status = 'delivered' THEN %(t0)s + (p.id %% 7200 + 20) * interval '1 second' END,
       CASE WHEN d.status IN ('delivered', 'bounced')
            THEN %(t0)s + (p.id %% 7200 + 20) * interval '1 second' END,
       p.id %% 3 = 0, p.id %% 10 = 0, 0
FROM incidents_affectedperson p
JOIN (SELECT unnest(%(segments)s::bigint[]) AS segment, unnest(%(campaigns)s::bigint[]) AS campaign) c
  ON c.segment = p.segment_id,
LATERAL (SELECT CASE
    WHEN p.contact_status = 'contacted' AND p.contact_method = 'email' THEN 'delivered'
    WHEN p.contact_status = 'unreachable' THEN 'bounced'
    WHEN p.contact_status = 'pending' THEN 'sent'
    ELSE 'failed' END AS status) d
WHERE p.incident_id = %(incident)s
"""

# Events: every delivery handed to the ESP gets "sent" plus its outcome; a third "opened".
EVENTS_SQL = """
INSERT INTO campaigns_deliveryevent
  (esp, event_key, event_type, message_id, recipient, occurred_at, received_at, applied_at,
   outcome, bounce_kind, description, mta_response, metadata, tags, raw, delivery_id, incident_id)
SELECT 'postmark', 'bench-' || d.id || '-' || e.kind, e.kind, d.esp_message_id, d.address,
       coalesce(d.last_event_at, d.sent_at), coalesce(d.last_event_at, d.sent_at) + interval '2 seconds',
       coalesce(d.last_event_at, d.sent_at) + interval '3 seconds', 'applied', '', '', '',
       '{}'::jsonb, '[]'::jsonb, '{}'::jsonb, d.id, d.incident_id
FROM campaigns_delivery d,
LATERAL (VALUES ('sent'), (CASE d.status WHEN 'delivered' THEN 'delivered'
                               WHEN 'bounced' THEN 'bounced' END),
                (CASE WHEN d.opened THEN 'opened' END)) e(kind)
WHERE d.incident_id = %(incident)s AND d.status <> 'failed' AND e.kind IS NOT NULL
"""


def generate(people: int) -> str:
    """Create the incident, its segments, campaigns, people, deliveries and events."""
    from datetime import UTC, datetime

    from django.db import connection, transaction

    from campaigns.models import Campaign, Message, MessageVersion
    from incidents import services
    from incidents.actors import Actor
    from incidents.models import Incident, Segment
    from incidents.roles import SUPPORT

    t0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    actor = Actor.system("bench")
    user = services.user_create_with_role(
        username="bench_support",
        email="bench@amends.example",
        password=None,
        role=SUPPORT,
        by=actor,
    )
    incident = services.incident_open(
        by=Actor.for_user(user),
        title="Bench: 1M people",
        summary="Dashboard benchmark.",
        severity="SEV1",
    )
    Incident.objects.filter(pk=incident.pk).update(created_at=t0)
    segments = [
        Segment.objects.create(incident=incident, name=name, position=i, is_default=(i == 2))
        for i, name in enumerate(["Registry owners", "Germany", "Everyone else"])
    ]
    campaigns = []
    for segment in segments:
        message = Message.objects.create(
            incident=incident,
            segment=segment,
            sender_address="care@retailer.example",
            version_count=1,
        )
        version = MessageVersion(
            message=message,
            number=1,
            author=user,
            sender_address="care@retailer.example",
            fallback_locale="en",
            content={"en": {"subject": "Sorry", "text": "Sorry.", "html": ""}},
        )
        version.content_hash = version.compute_hash()
        version.save()
        campaigns.append(
            Campaign.objects.create(
                incident=incident,
                segment=segment,
                version=version,
                content_hash=version.content_hash,
                status=Campaign.Status.COMPLETED,
                launched_at=t0,
            )
        )
    params = {
        "incident": incident.pk,
        "t0": t0,
        "n": people,
        "seg_a": segments[0].pk,
        "seg_b": segments[1].pk,
        "seg_c": segments[2].pk,
        "segments": [s.pk for s in segments],
        "campaigns": [c.pk for c in campaigns],
    }
    for label, sql in (
        ("people", PEOPLE_SQL),
        ("deliveries", DELIVERIES_SQL),
        ("events", EVENTS_SQL),
    ):
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute(sql, params)
            rows = cursor.rowcount
        print(f"  {label}: {rows:,} rows in {time.monotonic() - started:.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE incidents_affectedperson")
        cursor.execute("VACUUM ANALYZE campaigns_delivery")
        cursor.execute("VACUUM ANALYZE campaigns_deliveryevent")
    return incident.reference


# --- Timing ------------------------------------------------------------------------------------


def _percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))]


def time_requests(client, url: str, n: int, *, before=None, headers=None) -> dict:
    client.get(url, headers=headers or {})  # warm-up: sessions, permission cache, templates
    times = []
    for _ in range(n):
        if before:
            before()
        started = time.perf_counter()
        response = client.get(url, headers=headers or {})
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {
        "p50": statistics.median(times),
        "p95": _percentile(times, 95),
        "max": max(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep the data of the last run")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    parts = urlsplit(url)
    print(f"Machine: {machine()}")
    ensure_database(url)
    if not args.reuse:
        admin = urlunsplit(parts._replace(path="/postgres"))
        name = parts.path.lstrip("/")
        psql(admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        ensure_database(url)
    migrate(url)
    _setup_django(url)

    import django_rq
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from incidents.dashboard import refresh_snapshot
    from incidents.models import ContactSnapshot, Incident

    if args.reuse and Incident.objects.exists():
        reference = Incident.objects.order_by("pk").values_list("reference", flat=True).first()
    else:
        print(f"Generating {args.people:,} people, their deliveries and events …", flush=True)
        reference = generate(args.people)
    incident = Incident.objects.get(reference=reference)
    people = incident.affected.count()
    print(f"Incident {reference}: {people:,} people")

    refreshes = []
    for _ in range(3):
        started = time.perf_counter()
        snapshot = refresh_snapshot(incident=incident)
        refreshes.append((time.perf_counter() - started) * 1000)
    print(
        f"Refresh (compute_dashboard, the job's work): {', '.join(f'{t:.0f}' for t in refreshes)} ms"
    )
    print(f"  funnel {snapshot.data['funnel']}, unconfirmed {snapshot.data['unconfirmed']:,}")

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench_support"))
    kwargs = {"reference": reference}
    rows = []

    def keep_fresh():
        # A refresh job runs every few seconds while people watch; here the clock stands still.
        from django.utils import timezone

        ContactSnapshot.objects.filter(pk=incident.pk).update(computed_at=timezone.now())

    def make_stale():
        from datetime import timedelta

        from django.utils import timezone

        ContactSnapshot.objects.filter(pk=incident.pk).update(
            computed_at=timezone.now() - timedelta(minutes=5), refresh_requested_at=None
        )

    cases = [
        (
            "Dashboard page (snapshot fresh)",
            reverse("incidents:dashboard", kwargs=kwargs),
            keep_fresh,
            None,
        ),
        (
            "Live fragment (htmx poll)",
            reverse("incidents:dashboard-live", kwargs=kwargs),
            keep_fresh,
            {"HX-Request": "true"},
        ),
        ("Dashboard API", reverse("api-dashboard", kwargs=kwargs), keep_fresh, None),
        (
            "Dashboard page (snapshot stale: queue a refresh)",
            reverse("incidents:dashboard", kwargs=kwargs),
            make_stale,
            None,
        ),
        ("Follow-up queue, first page", reverse("incidents:followup", kwargs=kwargs), None, None),
        (
            "Unconfirmed list, first page",
            reverse("incidents:unconfirmed", kwargs=kwargs),
            None,
            None,
        ),
        ("Completion (exact count, API)", reverse("api-completion", kwargs=kwargs), None, None),
    ]
    for label, path, before, headers in cases:
        result = time_requests(client, path, args.requests, before=before, headers=headers)
        rows.append((label, result))
        print(
            f"{label}: p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms, max {result['max']:.1f} ms",
            flush=True,
        )
    django_rq.get_queue("default").empty()  # the refresh jobs the stale case queued
    print(f"Load after: {machine()}")


if __name__ == "__main__":
    main()
