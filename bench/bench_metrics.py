"""What one Prometheus scrape of /metrics costs at scale (docs/operations.md).

Seeds its own PostgreSQL database (`amends_bench_metrics`, created, migrated and
emptied) with one campaign of N deliveries in realistic states and 3×N webhook
events, then times the collector: the first scrape (which counts the events
table once) and steady scrapes (which count only the events added since).

    .venv/bin/python bench/bench_metrics.py --deliveries 1000000
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ensure_database, machine, migrate  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/amends_bench_metrics"


def _columns(model, replace: dict[str, str]) -> tuple[str, str]:
    """Column list and SELECT expressions copying a template row, with some replaced."""
    names = [f.column for f in model._meta.concrete_fields if f.column != "id"]
    return ", ".join(names), ", ".join(replace.get(n, f"t.{n}") for n in names)


def seed(n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from campaigns.models import Delivery, DeliveryEvent
    from incidents import services
    from incidents.actors import Actor
    from incidents.models import AffectedPerson
    from tests.deliveries import deliver, make_campaign

    user = get_user_model().objects.create_user("bench", password="x")
    incident = services.incident_open(
        by=Actor.for_user(user), title="Bench", summary="Metrics bench", severity="SEV2"
    )
    campaign = make_campaign(incident)
    template = deliver(campaign, status="sent", name="template")
    with connection.cursor() as cursor:
        cols, exprs = _columns(
            AffectedPerson,
            {
                "address": "'p' || g || '@example.com'",
                "original_address": "'P' || g || '@Example.com'",
            },
        )
        cursor.execute(
            f"INSERT INTO incidents_affectedperson ({cols}) SELECT {exprs} "
            f"FROM incidents_affectedperson t, generate_series(1, %s) g WHERE t.id = %s",
            [n - 1, template.person_id],
        )
        # 70% delivered, 10% sent (half unconfirmed), 8% queued, 5% bounced, 4% deferred,
        # 2% suppressed, 1% failed, 0.1% uncertain (by id modulo 1000).
        status = """CASE WHEN m < 700 THEN 'delivered' WHEN m < 800 THEN 'sent'
            WHEN m < 880 THEN 'queued' WHEN m < 930 THEN 'bounced' WHEN m < 970 THEN 'deferred'
            WHEN m < 990 THEN 'suppressed' WHEN m < 999 THEN 'failed' ELSE 'uncertain' END"""
        cols, exprs = _columns(
            Delivery,
            {
                "person_id": "p.id",
                "address": "p.original_address",
                "status": status,
                "verification_code": "lpad(p.id::text, 10, '0')",
                "sent_at": "now() - ((p.id %% 180) || ' minutes')::interval",
            },
        )
        cursor.execute(
            f"INSERT INTO campaigns_delivery ({cols}) SELECT {exprs} "
            f"FROM campaigns_delivery t, (SELECT p.*, p.id %% 1000 AS m "
            f"FROM incidents_affectedperson p WHERE p.id <> %s) p WHERE t.id = %s",
            [template.person_id, template.pk],
        )
        event = DeliveryEvent(esp="postmark", event_key="template", event_type="delivered")
        event.save()
        cols, exprs = _columns(
            DeliveryEvent,
            {
                "esp": "(ARRAY['postmark','mailgun','amazon_ses'])[1 + g %% 3]",
                "event_key": "'k' || g",
                "received_at": "now() - ((g %% 10800) || ' seconds')::interval",
                "applied_at": "CASE WHEN g %% 3000 = 0 THEN NULL ELSE now() - "
                "((g %% 10800) || ' seconds')::interval + interval '3 seconds' END",
            },
        )
        cursor.execute(
            f"INSERT INTO campaigns_deliveryevent ({cols}) SELECT {exprs} "
            f"FROM campaigns_deliveryevent t, generate_series(1, %s) g WHERE t.id = %s",
            [3 * n, event.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def scrape() -> float:
    from prometheus_client import CollectorRegistry, generate_latest

    from campaigns.metrics import AmendsCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AmendsCollector())
    started = time.perf_counter()
    generate_latest(registry)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep the data a last run seeded")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    if not args.reuse:
        os.system(f"psql -X -q '{admin}' -c 'DROP DATABASE IF EXISTS \"{parts.path[1:]}\"'")  # noqa: S605
        ensure_database(url)
        migrate(url)
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)  # the database's share of a scrape, not Redis'
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["AMENDS_NO_BOOTSTRAP"] = "1"
    import django

    django.setup()
    from django.core.cache import caches
    from django.utils import timezone

    from campaigns.models import Campaign, Delivery, DeliveryEvent

    if not args.reuse:
        started = time.perf_counter()
        seed(args.deliveries)
        print(f"seeded in {time.perf_counter() - started:.0f} s")
    print(
        f"{Delivery.objects.count():,} deliveries, {DeliveryEvent.objects.count():,} events; "
        f"{machine()}"
    )

    def report(label: str) -> None:
        steady = [scrape() for _ in range(args.scrapes)]
        print(
            f"{label}: median of {args.scrapes} {statistics.median(steady) * 1000:.0f} ms "
            f"(max {max(steady) * 1000:.0f} ms)"
        )

    Campaign.objects.update(status="running", finished_at=None)
    caches["shared"].clear()
    print(f"first scrape, counting the events table once: {scrape() * 1000:.0f} ms")
    report("steady scrape, the campaign running")
    two_days_ago = timezone.now() - timezone.timedelta(days=2)
    Campaign.objects.update(status="completed", finished_at=two_days_ago)
    report("steady scrape, the campaign finished two days ago")


if __name__ == "__main__":
    main()
