"""The Prometheus endpoint (issue 6, item 8): restricted, and right for the rows it counts."""

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from campaigns.metrics import SETTLED_TTL
from campaigns.models import Campaign, Delivery, DeliveryEvent
from tests.deliveries import Status, deliver, make_campaign

TOKEN = "scrape-me-" + "x" * 20
NOW = timezone.datetime(2026, 11, 30, 12, 0, tzinfo=timezone.UTC)


@pytest.fixture(autouse=True)
def _metrics_settings(settings):
    settings.METRICS_TOKENS = ["old-token-being-rotated-out", TOKEN]
    settings.RECONCILE_UNCONFIRMED_AFTER_MINUTES = 60
    # A shared cache of this test's own: the running event counts start from nothing.
    settings.CACHES = settings.CACHES | {
        "shared": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"metrics-{uuid.uuid4()}",
        }
    }


def scrape(client, token=TOKEN, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get(reverse("metrics"), **headers)


def samples(response) -> dict[tuple, float]:
    """{(sample name, (label, value), …): value} from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return out


def event(esp, n, *, received_at, applied_after=None):
    """`n` stored events from `esp`; applied `applied_after` seconds after they arrived."""
    for _ in range(n):
        DeliveryEvent.objects.create(
            esp=esp,
            event_key=uuid.uuid4().hex,
            event_type="delivered",
            received_at=received_at,
            applied_at=None if applied_after is None else received_at + applied_after,
            outcome="pending" if applied_after is None else "applied",
        )


# --- Access -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_scrape_without_credentials_is_refused_and_shows_nothing(client):
    response = scrape(client, token=None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"amends_" not in response.content


@pytest.mark.django_db
def test_a_wrong_token_is_refused(client):
    assert scrape(client, token="guess").status_code == 401
    assert scrape(client, token="").status_code == 401
    assert scrape(client, token=TOKEN + "x").status_code == 401


@pytest.mark.django_db
def test_without_metrics_token_no_bearer_token_is_accepted(client, settings):
    settings.METRICS_TOKENS = []
    assert scrape(client, token="").status_code == 401
    assert scrape(client, token="anything").status_code == 401


def test_a_logged_in_role_without_the_permission_gets_403_and_the_admin_reads(
    client, support_sam, admin_ada
):
    client.force_login(support_sam)
    assert scrape(client, token=None).status_code == 403
    client.force_login(admin_ada)
    response = scrape(client, token=None)
    assert response.status_code == 200
    assert ("amends_deliveries_sent_total",) in samples(response)


@pytest.mark.django_db
def test_either_token_works_while_one_is_being_rotated(client):
    assert scrape(client, token="old-token-being-rotated-out").status_code == 200
    assert scrape(client).status_code == 200


# --- Values -------------------------------------------------------------------------------------


@pytest.fixture
def seeded(incident):
    campaign = make_campaign(incident)
    for name, status, sent_at in [
        ("d1", Status.DELIVERED, NOW - timedelta(hours=3)),
        ("d2", Status.DELIVERED, NOW - timedelta(hours=3)),
        ("old", Status.SENT, NOW - timedelta(minutes=61)),  # unconfirmed
        ("new", Status.SENT, NOW - timedelta(minutes=59)),  # not yet
        ("q", Status.QUEUED, None),
        ("u", Status.UNCERTAIN, None),
        ("c", Status.CANCELLED, None),
        ("b", Status.BOUNCED, NOW - timedelta(hours=2)),
    ]:
        deliver(campaign, status=status, sent_at=sent_at, name=name)
    event("postmark", 3, received_at=NOW - timedelta(minutes=5), applied_after=timedelta(seconds=2))
    event("mailgun", 2, received_at=NOW - timedelta(minutes=4), applied_after=timedelta(seconds=8))
    event("postmark", 2, received_at=NOW - timedelta(seconds=90))  # waiting to be applied
    event("postmark", 1, received_at=NOW - timedelta(seconds=5))  # too fresh to count yet
    return campaign


def test_a_token_scrape_returns_valid_exposition_text_with_the_seeded_values(client, seeded):
    with time_machine.travel(NOW, tick=False):
        response = scrape(client)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    got = samples(response)
    for status, n in [
        ("delivered", 2),
        ("sent", 2),
        ("queued", 1),
        ("uncertain", 1),
        ("cancelled", 1),
        ("bounced", 1),
        ("failed", 0),
    ]:
        assert got[("amends_deliveries", ("status", status))] == n, status
    # Handed to and accepted by the ESP: sent, delivered, bounced (not uncertain or queued).
    assert got[("amends_deliveries_sent_total",)] == 5
    assert got[("amends_deliveries_unconfirmed",)] == 1
    assert got[("amends_campaigns", ("status", "running"))] == 1
    assert got[("amends_webhook_events_total", ("esp", "postmark"))] == 5
    assert got[("amends_webhook_events_total", ("esp", "mailgun"))] == 2
    assert got[("amends_webhook_events_unapplied",)] == 3
    assert got[("amends_webhook_oldest_unapplied_event_age_seconds",)] == 90
    assert got[("amends_webhook_apply_lag_seconds", ("quantile", "0.5"))] == 2
    assert got[("amends_webhook_apply_lag_seconds", ("quantile", "1"))] == 8
    assert got[("amends_webhook_apply_lag_sample_events",)] == 5
    assert got[("amends_metrics_collect_seconds",)] >= 0


def test_the_event_counts_only_rise_and_take_in_new_events_once_settled(client, seeded):
    with time_machine.travel(NOW, tick=False):
        first = samples(scrape(client))
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        event("mailgun", 4, received_at=NOW + timedelta(seconds=10))
        second = samples(scrape(client))
        again = samples(scrape(client))

    postmark, mailgun = (
        ("amends_webhook_events_total", ("esp", "postmark")),
        (
            "amends_webhook_events_total",
            ("esp", "mailgun"),
        ),
    )
    assert (first[postmark], first[mailgun]) == (5, 2)
    # The fresh postmark event is 65 s old now; the new mailgun ones 50 s.
    assert (second[postmark], second[mailgun]) == (6, 6)
    assert (again[postmark], again[mailgun]) == (6, 6)


def test_a_lost_running_count_is_rebuilt_from_the_table(client, seeded):
    from django.core.cache import caches

    with time_machine.travel(NOW, tick=False):
        before = samples(scrape(client))
        caches["shared"].clear()
        after = samples(scrape(client))
    key = ("amends_webhook_events_total", ("esp", "postmark"))
    assert before[key] == after[key] == 5


def test_a_scrape_is_a_handful_of_queries_however_many_rows(
    client, seeded, django_assert_max_num_queries
):
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(10):
        assert scrape(client).status_code == 200


@pytest.mark.django_db
def test_queue_depths_come_from_rq_and_a_redis_outage_is_a_metric_not_an_error(
    client, settings, monkeypatch
):
    import django_rq

    class FakeQueue:
        def __init__(self, name):
            self.count = {"send": 7}.get(name, 0)
            self.failed_job_registry = type("Registry", (), {"count": 2 if name == "send" else 0})

    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    monkeypatch.setattr(django_rq, "get_queue", FakeQueue)
    monkeypatch.setattr("rq.Worker.count", staticmethod(lambda connection=None: 3))
    monkeypatch.setattr(django_rq, "get_connection", lambda name: None)
    got = samples(scrape(client))
    assert got[("amends_redis_up",)] == 1
    assert got[("amends_rq_queue_jobs", ("queue", "send"))] == 7
    assert got[("amends_rq_queue_jobs", ("queue", "default"))] == 0
    assert got[("amends_rq_failed_jobs", ("queue", "send"))] == 2
    assert got[("amends_rq_workers",)] == 3

    def down(name):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(django_rq, "get_queue", down)
    response = scrape(client)
    assert response.status_code == 200
    got = samples(response)
    assert got[("amends_redis_up",)] == 0
    assert not any(name.startswith("amends_rq_") for name, *_ in got)


@pytest.mark.django_db
def test_the_embedded_mode_has_no_queues_to_report(client, settings):
    settings.REDIS_URL = ""
    got = samples(scrape(client))
    assert not any(name.startswith(("amends_rq_", "amends_redis_")) for name, *_ in got)


def test_a_campaign_finished_long_ago_is_counted_from_the_cache_and_all_its_sent_are_unconfirmed(
    client, incident
):
    campaign = make_campaign(incident)
    for name, status in [("a", Status.DELIVERED), ("b", Status.SENT), ("c", Status.SENT)]:
        deliver(campaign, status=status, sent_at=NOW - timedelta(hours=5), name=name)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.COMPLETED, finished_at=NOW - timedelta(hours=4)
    )

    with time_machine.travel(NOW, tick=False):
        first = samples(scrape(client))
        # A late event moves one on; the cached counts show it within SETTLED_TTL.
        Delivery.objects.filter(address="B@Example.com").update(status=Status.DELIVERED)
        cached = samples(scrape(client))
    with time_machine.travel(NOW + timedelta(seconds=SETTLED_TTL + 1), tick=False):
        later = samples(scrape(client))

    delivered, unconfirmed = (
        ("amends_deliveries", ("status", "delivered")),
        ("amends_deliveries_unconfirmed",),
    )
    assert (first[delivered], first[unconfirmed]) == (1, 2)
    assert (cached[delivered], cached[unconfirmed]) == (1, 2)
    assert (later[delivered], later[unconfirmed]) == (2, 1)
    assert first[("amends_deliveries_sent_total",)] == later[("amends_deliveries_sent_total",)] == 3
