"""Tracking (issue 6): ESP events move deliveries, contact people and feed the suppression list.

Events go through anymail's real webhook views; each request's apply job runs
right after it (`post` below), on a real rq worker when REDIS_URL is set.
Deliveries are launched by the real service and then marked sent the way the
worker records an ESP's answer, so these tests need no sending threads.
"""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, Delivery, DeliveryEvent, SendClaim, Suppression
from incidents.actors import Actor
from incidents.models import AffectedPerson, AuditEntry, ContactRecord, SendLogEntry
from incidents.services.audience import default_segment
from tests.factories import freeze_people

SECRET = "esp:webhook-secret-1"
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
Status = Delivery.Status
CONTENT = {"en": {"subject": "We are sorry", "text": "Code {{ verification_code }}", "html": ""}}


def configure(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": [SECRET, "esp:rotated-out-soon"],
        "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-signing-key",
    }
    settings.SOFT_BOUNCE_RETRIES = 2
    settings.SOFT_BOUNCE_RETRY_DELAY_SECONDS = 600
    settings.DEFERRAL_RETRY = False


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    configure(settings)


def auth(secret=SECRET):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def poster(client, run_jobs):
    """post(esp, payload, **headers): one webhook request, then its apply job."""

    def _post(esp, payload, **headers):
        with run_jobs():
            return client.post(
                f"/webhooks/{esp}/tracking/",
                json.dumps(payload),
                content_type="application/json",
                **(headers or auth()),
            )

    return _post


@pytest.fixture
def post(client, run_jobs):
    return poster(client, run_jobs)


def launch_sent(incident, author, approver, count=3):
    """A campaign to `count` people, each delivery recorded as sent with id pm-<delivery id>."""
    freeze_people(
        incident,
        author,
        [(f"orig-{i}", f"person{i}@example.com", "en", {}) for i in range(count)],
    )
    segment = default_segment(incident)
    version = services.version_create(
        by=Actor.for_user(author),
        segment=segment,
        sender_name="Care",
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=CONTENT,
    )
    services.version_approve(version=version, by=Actor.for_user(approver))
    campaign = services.campaign_launch(version=version, segment=segment, by=Actor.for_user(author))
    # What the worker records when the ESP takes a message.
    Delivery.objects.filter(campaign=campaign).update(
        status=Status.SENT,
        sent_at=T0,
        esp_message_id=Concat(Value("pm-"), Cast("id", CharField())),
    )
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)
    return list(campaign.deliveries.select_related("person").order_by("id"))


@pytest.fixture
def deliveries(incident, support_sam, comms_cleo):
    return launch_sent(incident, support_sam, comms_cleo)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def meta(delivery):
    return {"delivery_id": str(delivery.pk), "incident": delivery.incident.reference}


def pm_delivered(delivery, minutes=1, *, message_id=None):
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id or delivery.esp_message_id,
        "Recipient": delivery.address,
        "Tag": delivery.incident.reference,
        "DeliveredAt": at(minutes),
        "Details": "smtp;250 2.0.0 OK",
        "Metadata": meta(delivery),
    }


def pm_bounce(delivery, kind="HardBounce", minutes=2, bounce_id=42, *, message_id=None):
    record = "SpamComplaint" if kind == "SpamComplaint" else "Bounce"
    return {
        "RecordType": record,
        "ID": bounce_id,
        "Type": kind,
        "TypeCode": 1,
        "Name": kind,
        "Tag": delivery.incident.reference,
        "MessageID": message_id or delivery.esp_message_id,
        "Metadata": meta(delivery),
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message",
        "Details": "smtp;550 5.1.1 user unknown" if kind == "HardBounce" else "smtp;452 full",
        "Email": delivery.address,
        "From": "care@retailer.example",
        "BouncedAt": at(minutes),
        "Inactive": kind == "HardBounce",
        "CanActivate": True,
        "Subject": "We are sorry",
    }


def pm_open(delivery, minutes=5):
    return {
        "RecordType": "Open",
        "MessageStream": "outbound",
        "MessageID": delivery.esp_message_id,
        "Recipient": delivery.address,
        "ReceivedAt": at(minutes),
        "FirstOpen": True,
        "Metadata": meta(delivery),
        "Tag": "",
    }


def refreshed(delivery):
    return Delivery.objects.select_related("person").get(pk=delivery.pk)


# --- Delivered, contacted -------------------------------------------------------------------


def test_a_delivered_event_marks_the_delivery_delivered_and_the_person_contacted(post, deliveries):
    first = deliveries[0]
    assert post("postmark", pm_delivered(first, 1)).status_code == 200

    delivery = refreshed(first)
    assert delivery.status == Status.DELIVERED
    assert delivery.delivered_at == T0 + timedelta(minutes=1)
    person = delivery.person
    assert (person.contact_status, person.contact_method) == ("contacted", "email")
    assert person.contacted_at == T0 + timedelta(minutes=1)
    record = ContactRecord.objects.get(person=person)
    assert (record.previous_status, record.status, record.delivery_id) == (
        "pending",
        "contacted",
        delivery.pk,
    )
    event = DeliveryEvent.objects.get()
    assert (event.outcome, event.delivery_id, event.incident_id) == (
        "applied",
        delivery.pk,
        delivery.incident_id,
    )
    assert event.applied_at is not None and event.raw["RecordType"] == "Delivery"
    entry = AuditEntry.objects.get(action="tracking.events_applied")
    assert entry.incident_id == delivery.incident_id and entry.after["contacted"] == [person.pk]
    # Our own apologies are tracked on their deliveries, not added to the company's send log.
    assert not SendLogEntry.objects.filter(message_id=first.esp_message_id).exists()


def test_an_event_is_matched_by_message_id_when_the_metadata_is_missing(post, deliveries):
    payload = pm_delivered(deliveries[1])
    payload["Metadata"] = {}
    post("postmark", payload)
    assert refreshed(deliveries[1]).status == Status.DELIVERED


def test_metadata_from_another_system_cannot_claim_our_delivery(post, deliveries):
    payload = pm_delivered(deliveries[0], message_id="company-mail-1")
    payload["Metadata"] = {"delivery_id": str(deliveries[0].pk), "incident": "INC-1999-0001"}
    post("postmark", payload)
    assert refreshed(deliveries[0]).status == Status.SENT
    assert DeliveryEvent.objects.get().outcome == "unmatched"


def test_opens_are_flags_that_never_change_the_status(post, deliveries):
    post("postmark", pm_open(deliveries[0]))
    delivery = refreshed(deliveries[0])
    assert delivery.opened and delivery.status == Status.SENT
    assert delivery.person.contact_status == "pending"


# --- Order, duplicates ----------------------------------------------------------------------


def test_the_same_event_sent_three_times_is_stored_and_applied_once(post, deliveries):
    for _ in range(3):
        assert post("postmark", pm_delivered(deliveries[0])).status_code == 200
    assert DeliveryEvent.objects.count() == 1
    assert ContactRecord.objects.count() == 1
    assert AuditEntry.objects.filter(action="tracking.events_applied").count() == 1


def test_an_old_deferral_after_delivered_changes_nothing(post, deliveries):
    post("postmark", pm_delivered(deliveries[0], minutes=10))
    deferral = pm_bounce(deliveries[0], "Transient", minutes=3)  # anymail: deferred
    post("postmark", deferral)

    delivery = refreshed(deliveries[0])
    assert delivery.status == Status.DELIVERED
    assert delivery.last_event_at == T0 + timedelta(minutes=10)
    assert DeliveryEvent.objects.get(event_type="deferred").outcome == "no_change"


def test_a_bounce_after_delivered_is_recorded_and_the_person_becomes_unreachable(post, deliveries):
    post("postmark", pm_delivered(deliveries[0], minutes=1))
    post("postmark", pm_bounce(deliveries[0], "HardBounce", minutes=30))

    delivery = refreshed(deliveries[0])
    assert (delivery.status, delivery.bounce_kind) == (Status.BOUNCED, "hard")
    assert delivery.delivered_at == T0 + timedelta(minutes=1)  # kept: it was delivered once
    assert delivery.person.contact_status == "unreachable"
    assert [r.status for r in ContactRecord.objects.order_by("id")] == [
        "contacted",
        "unreachable",
    ]


def test_a_late_delivered_after_a_hard_bounce_does_not_undo_the_bounce(post, deliveries):
    post("postmark", pm_bounce(deliveries[0], "HardBounce", minutes=30))
    post("postmark", pm_delivered(deliveries[0], minutes=1))
    delivery = refreshed(deliveries[0])
    assert delivery.status == Status.BOUNCED
    assert delivery.person.contact_status == "unreachable"


# --- Bounces and suppression ------------------------------------------------------------------


def test_a_hard_bounce_suppresses_the_address_and_makes_the_person_unreachable(post, deliveries):
    post("postmark", pm_bounce(deliveries[2], "HardBounce"))

    suppression = Suppression.objects.get(address=deliveries[2].person.address)
    assert (suppression.reason, suppression.source) == ("hard_bounce", "webhook")
    person = refreshed(deliveries[2]).person
    assert person.contact_status == "unreachable"
    assert "Hard bounce" in person.contact_note


def test_a_complaint_before_delivery_makes_the_person_unreachable_and_is_suppressed(
    post, deliveries
):
    post("postmark", pm_bounce(deliveries[1], "SpamComplaint"))
    assert refreshed(deliveries[1]).status == Status.COMPLAINED
    assert refreshed(deliveries[1]).person.contact_status == "unreachable"
    assert Suppression.objects.get().reason == "complaint"


def test_a_person_contacted_by_phone_is_never_touched_by_a_bounce(post, deliveries):
    person = AffectedPerson.objects.get(pk=deliveries[0].person_id)
    person.set_contact_status("contacted", method="phone", note="Called, apologised.")

    post("postmark", pm_bounce(deliveries[0], "HardBounce"))

    person.refresh_from_db()
    assert (person.contact_status, person.contact_method) == ("contacted", "phone")
    assert refreshed(deliveries[0]).status == Status.BOUNCED  # the delivery itself bounced


def test_a_soft_bounce_sends_the_same_delivery_again_then_gives_up(post, deliveries, settings):
    first = deliveries[0]
    post("postmark", pm_bounce(first, "SoftBounce", minutes=2, bounce_id=1))

    delivery = refreshed(first)
    assert (delivery.status, delivery.soft_bounces) == (Status.QUEUED, 1)
    assert delivery.next_attempt_at > delivery.updated_at
    assert Campaign.objects.get(pk=delivery.campaign_id).status == Campaign.Status.RUNNING
    assert Delivery.objects.filter(person=delivery.person).count() == 1  # never a second row
    retried = AuditEntry.objects.get(action="delivery.soft_bounce_retried")
    assert retried.object_id == str(first.pk) and retried.after["retry"] == 1
    assert delivery.person.contact_status == "pending"
    assert not Suppression.objects.exists()

    for n in (2, 3):  # the worker sends it again; it soft-bounces again
        Delivery.objects.filter(pk=first.pk).update(
            status=Status.SENT, esp_message_id=f"pm-retry-{n}", next_attempt_at=None
        )
        post(
            "postmark",
            pm_bounce(first, "SoftBounce", minutes=60 * n, bounce_id=n, message_id=f"pm-retry-{n}"),
        )

    delivery = refreshed(first)
    assert (delivery.status, delivery.bounce_kind, delivery.soft_bounces) == (
        Status.BOUNCED,
        "soft",
        2,
    )
    assert delivery.person.contact_status == "unreachable"
    assert AuditEntry.objects.filter(action="delivery.soft_bounce_retried").count() == 2


def test_a_resent_soft_bounce_is_not_retried_twice(post, deliveries):
    bounce = pm_bounce(deliveries[0], "SoftBounce", bounce_id=7)
    post("postmark", bounce)
    post("postmark", bounce)
    assert refreshed(deliveries[0]).soft_bounces == 1


def test_a_deferral_is_retried_only_when_the_policy_says_so(post, deliveries, settings):
    post("postmark", pm_bounce(deliveries[0], "Transient", minutes=2, bounce_id=1))
    assert refreshed(deliveries[0]).status == Status.DEFERRED
    settings.DEFERRAL_RETRY = True
    post("postmark", pm_bounce(deliveries[1], "Transient", minutes=2, bounce_id=2))
    assert refreshed(deliveries[1]).status == Status.QUEUED


# --- Rows the worker has not settled ----------------------------------------------------------


def test_webhook_evidence_moves_an_uncertain_delivery_to_delivered(post, deliveries):
    Delivery.objects.filter(pk=deliveries[0].pk).update(status=Status.UNCERTAIN)
    post("postmark", pm_delivered(deliveries[0]))
    assert refreshed(deliveries[0]).status == Status.DELIVERED


def test_an_event_before_the_worker_records_the_send_settles_the_row(post, deliveries):
    lease = T0 + timedelta(minutes=5)
    Delivery.objects.filter(pk=deliveries[0].pk).update(
        status=Status.SENDING, esp_message_id="", lease_until=lease
    )
    payload = pm_delivered(deliveries[0], message_id="pm-early")
    post("postmark", payload)

    delivery = refreshed(deliveries[0])
    assert (delivery.status, delivery.esp_message_id) == (Status.DELIVERED, "pm-early")
    assert delivery.lease_until is None
    # The worker's own record comes later and finds the row no longer `sending`.
    assert not Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=Status.SENT
    )


# --- Mail that is not ours ----------------------------------------------------------------------


def test_events_for_unknown_message_ids_are_kept_and_feed_the_send_log(post, deliveries):
    payload = pm_delivered(deliveries[0], message_id="company-newsletter-77")
    payload["Metadata"] = {}
    post("postmark", payload)

    event = DeliveryEvent.objects.get()
    assert (event.outcome, event.delivery_id, event.message_id) == (
        "unmatched",
        None,
        "company-newsletter-77",
    )
    assert SendLogEntry.objects.get(message_id="company-newsletter-77").status == "delivered"


# --- The sweeper's evidence -----------------------------------------------------------------


def test_a_stored_event_is_evidence_for_the_sweeper_that_the_esp_took_the_message(deliveries):
    from campaigns import sending
    from campaigns.tracking import events_store
    from campaigns.tracking.normalise import to_row
    from campaigns.tracking.sandbox import simulate

    row = deliveries[0]
    expired = T0 - timedelta(hours=1)
    handed = SendClaim.objects.create(
        campaign_id=row.campaign_id, lease_until=expired, handed_through=row.pk
    )
    Delivery.objects.filter(pk=row.pk).update(
        status=Status.SENDING, esp_message_id="", lease_until=expired, claim=handed
    )
    # Stored by a webhook but not applied yet (its job has not run).
    [event] = simulate(
        message_id="<esp-took-it@example>",
        address=row.address,
        metadata=meta(row),
        tags=[],
        sent_at=T0,
    )[:1]
    events_store(rows=[to_row(event, "Postmark", received_at=timezone.now())])

    sending.sweep()

    delivery = refreshed(row)
    assert (delivery.status, delivery.esp_message_id) == (Status.SENT, "esp-took-it@example")


def test_a_burst_of_webhooks_queues_the_apply_job_once_per_interval_and_never_forgets_the_last(
    settings, monkeypatch
):
    import threading

    from campaigns import jobs

    settings.APPLY_PUSH_SECONDS = 0.2
    pushed: list[float] = []
    last = threading.Event()
    monkeypatch.setattr(jobs, "_push_apply", lambda: (pushed.append(1), last.set()))
    pusher = jobs._ApplyPusher()

    pusher()  # the first request of the burst pushes at once
    assert len(pushed) == 1
    last.clear()
    for _ in range(5):  # the rest, within the interval, leave it to one timer
        pusher()
    assert len(pushed) == 1
    assert last.wait(2)  # … which pushes after their events were stored
    assert len(pushed) == 2


def test_the_sweeper_queues_the_apply_job_for_events_whose_push_was_lost(
    client, run_jobs, deliveries, settings, monkeypatch
):
    from campaigns import jobs
    from campaigns.sending import sweep

    monkeypatch.setattr(jobs, "enqueue_apply", lambda: None)  # the web process died
    response = client.post(
        "/webhooks/postmark/tracking/",
        json.dumps(pm_delivered(deliveries[0])),
        content_type="application/json",
        **auth(),
    )
    assert response.status_code == 200
    monkeypatch.undo()
    event = DeliveryEvent.objects.get()
    assert event.applied_at is None

    with run_jobs():
        assert sweep()["apply_queued"] == 0  # too recent: its own push may still come
    event.refresh_from_db()
    assert event.applied_at is None

    later = timezone.now() + timedelta(seconds=settings.APPLY_FORGOTTEN_SECONDS + 1)
    with run_jobs():
        assert sweep(now=later)["apply_queued"] == 1

    event.refresh_from_db()
    assert event.applied_at is not None
    assert refreshed(deliveries[0]).status == Status.DELIVERED
