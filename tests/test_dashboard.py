"""The incident dashboard: funnel, counts, time to contact, chart, snapshot and live updates."""

from datetime import timedelta

from django.urls import reverse

from incidents import services
from incidents.actors import Actor
from incidents.dashboard import compute_dashboard, dashboard_for
from incidents.models import AffectedPerson, ContactSnapshot
from tests.contact_data import campaign, delivery, people


def _url(name, incident):
    return reverse(f"incidents:{name}", kwargs={"reference": incident.reference})


def _emailed(person, camp):
    """As tracking leaves it: delivered, and the person contacted by email."""
    d = delivery(camp, person, "delivered", delivered_at=camp.launched_at)
    person.set_contact_status("contacted", method="email", contacted_at=camp.launched_at)
    return d


def _scene(incident, support_sam):
    crowd = people(incident, support_sam, 4)
    camp = campaign(incident, crowd[0].segment, support_sam)
    _emailed(crowd[0], camp)
    delivery(camp, crowd[1], "sent", sent_minutes_ago=90)  # unconfirmed
    delivery(camp, crowd[2], "bounced", bounce_kind="hard")
    services.contact_record(person=crowd[3], method="phone", by=Actor.for_user(support_sam))
    return crowd


def test_the_funnel_counts_people_from_affected_to_contacted(incident, support_sam):
    _scene(incident, support_sam)
    data = compute_dashboard(incident=incident)
    assert data["funnel"] == {"affected": 4, "sent": 3, "delivered": 1, "contacted": 2}
    assert data["by_status"] == {"pending": 2, "contacted": 2, "unreachable": 0, "waived": 0}
    assert data["methods"]["email"] == 1 and data["methods"]["phone"] == 1
    assert data["deliveries"]["bounced"] == 1 and data["unconfirmed"] == 1
    [segment] = data["segments"]
    assert segment["people"] == 4 and segment["by_status"]["contacted"] == 2


def test_removed_people_leave_every_count(incident, support_sam):
    crowd = people(incident, support_sam, 2)
    services.affected_remove(person=crowd[0], reason="Test address", by=Actor.for_user(support_sam))
    data = compute_dashboard(incident=incident)
    assert (data["people"], data["removed"], data["by_status"]["pending"]) == (1, 1, 1)


def test_time_to_contact_percentiles_run_from_the_incidents_opening(incident, support_sam):
    crowd = people(incident, support_sam, 4)
    incident.created_at -= timedelta(hours=5)
    incident.save(update_fields=["created_at"])
    for hours, person in enumerate(crowd, start=1):
        services.contact_record(
            person=person,
            method="letter",
            contacted_at=incident.created_at + timedelta(hours=hours),
            by=Actor.for_user(support_sam),
        )
    ttc = compute_dashboard(incident=incident)["time_to_contact"]
    assert (ttc["contacted"], ttc["p50"], ttc["p90"], ttc["p99"]) == (4, 7200, 14400, 14400)


def test_the_page_shows_the_funnel_segments_chart_and_links_to_the_lists(
    client, incident, support_sam
):
    _scene(incident, support_sam)
    client.force_login(support_sam)
    html = client.get(_url("dashboard", incident)).content.decode()
    followup = _url("followup", incident)
    assert "<strong>4</strong> affected" in html and "<strong>2</strong> contacted" in html
    assert f'href="{followup}?status=pending"><strong>2</strong> pending' in html
    assert "<polyline" in html and "<svg" in html and "<script" not in html.split("</head>")[1]
    assert f'href="{_url("unconfirmed", incident)}"><strong>1</strong> delivery was sent' in html
    assert 'hx-trigger="every 5s"' in html and "Figures as of" in html


def test_the_live_part_is_served_alone_for_htmx(client, incident, support_sam):
    _scene(incident, support_sam)
    client.force_login(support_sam)
    response = client.get(_url("dashboard-live", incident), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="dashboard-live"') and "<html" not in html


def test_a_fresh_snapshot_is_read_not_recounted(
    client, incident, support_sam, django_assert_max_num_queries
):
    _scene(incident, support_sam)
    dashboard_for(incident=incident)  # counted once
    client.force_login(support_sam)
    client.get(_url("dashboard", incident))  # warm the session and permission caches
    with django_assert_max_num_queries(8):
        assert client.get(_url("dashboard", incident)).status_code == 200


def test_a_large_incident_is_counted_by_a_queued_job_once(
    client, incident, support_sam, settings, run_jobs, django_capture_on_commit_callbacks
):
    settings.DASHBOARD_INLINE_MAX_PEOPLE = 1
    _scene(incident, support_sam)
    client.force_login(support_sam)
    with run_jobs():
        first = client.get(_url("dashboard", incident)).content.decode()
    assert "Counting" in first  # nothing counted yet; the job ran after the response
    assert "<strong>4</strong> affected" in client.get(_url("dashboard", incident)).content.decode()
    # Stale: the figures shown are the old ones, and one refresh is queued however many look.
    ContactSnapshot.objects.filter(pk=incident.pk).update(
        computed_at=ContactSnapshot.objects.get(pk=incident.pk).computed_at - timedelta(minutes=1)
    )
    with django_capture_on_commit_callbacks() as queued:
        for _ in range(3):
            html = client.get(_url("dashboard", incident)).content.decode()
    assert "newer ones on their way" in html and "<strong>4</strong> affected" in html
    assert len(queued) <= 1
    assert ContactSnapshot.objects.get(pk=incident.pk).refresh_requested_at is not None
    assert AffectedPerson.objects.filter(incident=incident).count() == 4


def test_the_chart_counts_sends_and_the_esp_events_as_they_arrive(incident, support_sam):
    from django.utils import timezone

    from campaigns.models import DeliveryEvent

    crowd = _scene(incident, support_sam)
    for kind in ("delivered", "bounced", "opened"):
        DeliveryEvent.objects.create(
            esp="postmark",
            event_key=f"k-{kind}",
            event_type=kind,
            incident_id=incident.pk,
            received_at=timezone.now(),
            recipient=crowd[0].address,
        )
    data = compute_dashboard(incident=incident)
    assert data["events"] == {"delivered": 1, "bounced": 1, "opened": 1}
    totals = {k: sum(b[k] for b in data["chart"]["buckets"]) for k in ("sent", "delivered")}
    assert totals == {"sent": 3, "delivered": 1}
    assert sum(b["failed"] for b in data["chart"]["buckets"]) == 1
    assert sum(b["events"] for b in data["chart"]["buckets"]) == 3
    assert len(data["chart"]["buckets"]) <= 48
