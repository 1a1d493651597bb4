"""ESP webhooks in their real formats, refused forgeries, duplicates at volume, resent batches.

Postmark, Mailgun (signed), SparkPost and SendGrid's batched arrays
go through anymail's real views; the apply job runs after each request.
"""

import hashlib
import hmac
import random
from datetime import timedelta

import pytest
from anymail.signals import EventType
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from campaigns.models import Delivery, DeliveryEvent, Suppression
from campaigns.tracking import rules
from incidents.models import AffectedPerson, AuditEntry, ContactRecord
from tests.test_tracking import (
    T0,
    auth,
    configure,
    launch_sent,
    meta,
    pm_bounce,
    pm_delivered,
    poster,
    refreshed,
)

Status = Delivery.Status


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    configure(settings)


@pytest.fixture
def post(client, run_jobs):
    return poster(client, run_jobs)


@pytest.fixture
def deliveries(incident, support_sam, comms_cleo):
    return launch_sent(incident, support_sam, comms_cleo)


def epoch(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp())


# --- Four ESPs, real formats -------------------------------------------------------------------


def mailgun_payload(delivery, event="delivered", *, key="mailgun-signing-key", minutes=1):
    timestamp, token = str(epoch(0)), hashlib.sha256(f"{delivery.pk}{event}".encode()).hexdigest()
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "id": f"mg-{delivery.pk}-{event}",
            "timestamp": epoch(minutes) + 0.25,
            "recipient": delivery.address,
            "severity": "permanent",
            "reason": "bounce",
            "message": {"headers": {"message-id": delivery.esp_message_id}},
            "delivery-status": {"code": 550, "message": "5.1.1 user unknown", "description": ""},
            "tags": [delivery.incident.reference],
            "user-variables": meta(delivery),
        },
    }


def sparkpost_payload(delivery, event_type="delivery", *, minutes=1, bounce_class=None):
    event = {
        "type": event_type,
        "event_id": f"sp-{delivery.pk}-{event_type}",
        "transmission_id": delivery.esp_message_id,
        "message_id": "0e0d94b7-9085-4e3c-ab30-e3f2cd9c273e",
        "timestamp": str(epoch(minutes)),
        "rcpt_to": delivery.address,
        "raw_rcpt_to": delivery.address,
        "rcpt_meta": meta(delivery),
        "campaign_id": delivery.incident.reference,
    }
    if bounce_class:
        event.update(bounce_class=bounce_class, raw_reason="550 5.1.1 <x>: user unknown")
    group = "message_event" if event_type != "open" else "track_event"
    return [{"msys": {group: event}}]


def sendgrid_event(delivery, event, minutes, n=0):
    record = {
        "email": delivery.address,
        "timestamp": epoch(minutes),
        "event": event,
        "sg_event_id": f"sg-{delivery.pk}-{event}-{n}",
        "sg_message_id": f"{delivery.esp_message_id}.filter0001.1.0",
        "smtp-id": f"<{delivery.esp_message_id}>",
        "category": [delivery.incident.reference],
        **meta(delivery),
    }
    if event == "bounce":
        record.update(type="bounce", reason="550 5.1.1 user unknown", status="5.1.1")
    if event == "deferred":
        record.update(response="451 try later", attempt="1")
    return record


def test_postmark_mailgun_sparkpost_and_sendgrid_events_reach_their_deliveries(post, deliveries):
    first, second, third = deliveries
    assert post("postmark", pm_delivered(first)).status_code == 200
    assert post("mailgun", mailgun_payload(second)).status_code == 200
    payload = sparkpost_payload(third, "bounce", minutes=2, bounce_class="10")
    assert post("sparkpost", payload).status_code == 200
    batch = [sendgrid_event(first, "open", 5), sendgrid_event(second, "deferred", 0.5)]
    assert post("sendgrid", batch).status_code == 200

    assert [refreshed(d).status for d in deliveries] == [
        Status.DELIVERED,
        Status.DELIVERED,
        Status.BOUNCED,
    ]
    assert refreshed(first).opened
    assert refreshed(third).person.contact_status == "unreachable"
    assert Suppression.objects.get().address == third.person.address
    assert set(DeliveryEvent.objects.values_list("esp", flat=True)) == {
        "Postmark",
        "Mailgun",
        "SparkPost",
        "SendGrid",
    }
    assert not DeliveryEvent.objects.filter(applied_at__isnull=True).exists()
    # The deferral came late (older than delivered): kept, changed nothing.
    assert DeliveryEvent.objects.get(event_type="deferred").outcome == "no_change"


# --- Forgeries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["no auth", "wrong secret", "mailgun signature", "sparkpost without auth"]
)
def test_a_forged_webhook_is_refused_and_stores_nothing(post, deliveries, case):
    first = deliveries[0]
    if case == "no auth":
        response = post("postmark", pm_bounce(first), HTTP_X_NOTHING="1")
    elif case == "wrong secret":
        response = post("sendgrid", [sendgrid_event(first, "bounce", 1)], **auth("esp:guess"))
    elif case == "mailgun signature":
        response = post("mailgun", mailgun_payload(first, "failed", key="forged-key"))
    else:
        response = post(
            "sparkpost",
            sparkpost_payload(first, "bounce", bounce_class="10"),
            HTTP_AUTHORIZATION="Basic",
        )
    assert response.status_code in (400, 401, 403)
    assert not DeliveryEvent.objects.exists() and not Suppression.objects.exists()
    assert refreshed(first).status == Status.SENT


def test_the_previous_secret_is_accepted_while_rotating(post, deliveries):
    response = post("postmark", pm_delivered(deliveries[0]), **auth("esp:rotated-out-soon"))
    assert response.status_code == 200 and DeliveryEvent.objects.count() == 1


# --- Volume and order ----------------------------------------------------------------------------


def test_ten_thousand_events_each_sent_three_times_in_random_order_are_stored_once(
    post, incident, support_sam, comms_cleo
):
    people = launch_sent(incident, support_sam, comms_cleo, count=2500)
    events, expected = [], {}
    for i, delivery in enumerate(people):
        bounce = i % 10 == 0
        events += [
            sendgrid_event(delivery, "deferred", 1),
            sendgrid_event(delivery, "delivered", 2),
            sendgrid_event(delivery, "open", 3),
            sendgrid_event(delivery, "bounce", 10)
            if bounce
            else sendgrid_event(delivery, "click", 4),
        ]
        expected[delivery.pk] = Status.BOUNCED if bounce else Status.DELIVERED
    assert len(events) == 10_000
    sent = events * 3
    random.Random(6).shuffle(sent)
    for start in range(0, len(sent), 1000):
        assert post("sendgrid", sent[start : start + 1000]).status_code == 200

    assert DeliveryEvent.objects.count() == 10_000
    assert not DeliveryEvent.objects.filter(applied_at__isnull=True).exists()
    final = dict(Delivery.objects.values_list("pk", "status"))
    assert final == expected
    assert Delivery.objects.filter(opened=True).count() == 2500
    contact = dict(AffectedPerson.objects.values_list("deliveries__pk", "contact_status"))
    assert contact == {
        pk: "contacted" if status == Status.DELIVERED else "unreachable"
        for pk, status in expected.items()
    }
    assert Suppression.objects.count() == 250


# --- A batch resent after a failure --------------------------------------------------------------


def test_a_batch_resent_after_a_failure_is_applied_once(post, client, deliveries, monkeypatch):
    first, second, third = deliveries
    batch = [
        sendgrid_event(first, "delivered", 1),
        sendgrid_event(second, "deferred", 1),
        sendgrid_event(second, "delivered", 2),
        sendgrid_event(third, "bounce", 2),
        sendgrid_event(third, "open", 3),
    ]
    assert post("sendgrid", batch[:2]).status_code == 200  # an earlier, smaller delivery
    applied_before = dict(DeliveryEvent.objects.values_list("event_key", "applied_at"))

    # The ESP's next request stores its events, then fails before answering (the queue is down).
    from campaigns import jobs

    def queue_down():
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(jobs, "enqueue_apply", queue_down)
    client.raise_request_exception = False
    assert post("sendgrid", batch).status_code == 500
    assert DeliveryEvent.objects.filter(applied_at__isnull=True).count() == 3
    monkeypatch.undo()

    # So the ESP sends the whole batch again.
    assert post("sendgrid", batch).status_code == 200

    assert DeliveryEvent.objects.count() == 5
    assert not DeliveryEvent.objects.filter(applied_at__isnull=True).exists()
    for key, when in applied_before.items():
        assert DeliveryEvent.objects.get(event_key=key).applied_at == when
    assert [refreshed(d).status for d in deliveries] == [
        Status.DELIVERED,
        Status.DELIVERED,
        Status.BOUNCED,
    ]
    assert ContactRecord.objects.filter(status="contacted").count() == 2
    assert ContactRecord.objects.filter(status="unreachable").count() == 1
    assert Suppression.objects.count() == 1


def test_a_chunk_that_fails_while_applying_is_rolled_back_and_applied_once_later(
    post, deliveries, monkeypatch
):
    from campaigns.tracking import apply

    def broken(**kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(apply, "contact_from_deliveries", broken)
    post("sendgrid", [sendgrid_event(d, "delivered", 1) for d in deliveries])
    assert DeliveryEvent.objects.filter(applied_at__isnull=True).count() == 3
    assert all(refreshed(d).status == Status.SENT for d in deliveries)
    monkeypatch.undo()

    post("sendgrid", [sendgrid_event(d, "delivered", 1) for d in deliveries])  # resent

    assert all(refreshed(d).status == Status.DELIVERED for d in deliveries)
    assert ContactRecord.objects.count() == 3
    assert AuditEntry.objects.filter(action="tracking.events_applied").count() == 1


# --- No state regresses, whatever the order (property) --------------------------------------------

_EVENTS = [
    (EventType.SENT, ""),
    (EventType.DEFERRED, ""),
    (EventType.DELIVERED, ""),
    (EventType.BOUNCED, "soft"),
    (EventType.BOUNCED, "hard"),
    (EventType.COMPLAINED, ""),
    (EventType.REJECTED, ""),
    (EventType.FAILED, ""),
    (EventType.OPENED, ""),
]


@hsettings(max_examples=300, deadline=None)
@given(
    start=st.sampled_from([Status.SENDING, Status.SENT, Status.UNCERTAIN]),
    events=st.lists(
        st.tuples(st.sampled_from(_EVENTS), st.integers(min_value=0, max_value=30)),
        min_size=1,
        max_size=8,
    ),
    seed=st.randoms(use_true_random=False),
)
def test_no_state_regresses_and_the_order_of_events_does_not_matter(start, events, seed):
    policy = rules.Policy(soft_bounce_retries=0, retry_delay_seconds=60, deferral_retry=False)

    def run(ordered):
        track = rules.Track(status=start, esp_message_id="m-1")
        ranks = [rules.rank(track.status, track.bounce_kind)]
        for (event_type, kind), minute in ordered:
            rules.apply_event(
                track,
                event_type=event_type,
                occurred_at=T0 + timedelta(minutes=minute),
                message_id="m-1",
                bounce_kind=kind,
                reason="",
                policy=policy,
                now=T0,
            )
            ranks.append(rules.rank(track.status, track.bounce_kind))
        assert ranks == sorted(ranks), ranks  # never down the ladder
        return (
            track.status,
            track.bounce_kind if track.status == Status.BOUNCED else "",
            track.opened,
        )

    in_order = run(sorted(events, key=lambda e: e[1]))
    shuffled = list(events)
    seed.shuffle(shuffled)
    assert run(shuffled)[2] == in_order[2]
    # The most final thing the ESP said wins, in any order, except a late sent/deferred;
    # unless the ESP contradicts itself (refused to send, and also delivered or bounced):
    # then the first of the two to arrive stands.
    types = {event_type for (event_type, _), _ in events}
    refused = types & {EventType.REJECTED, EventType.FAILED}
    taken = types & {EventType.DELIVERED, EventType.BOUNCED, EventType.COMPLAINED}
    status, kind, _ = run(shuffled)
    contradicted = (refused and taken) or len(refused) > 1
    if rules.rank(status, kind) >= rules.rank(Status.DELIVERED) and not contradicted:
        assert (status, kind) == in_order[:2]
