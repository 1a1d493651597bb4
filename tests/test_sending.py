"""Sending the apology (issue 5): launch, batches, the ESP, errors, control and recovery.

Every test drives anymail's real Postmark backend against a local HTTP stub
(tests/esp_stub.py), or the sandbox outbox for the embedded demo. With
REDIS_URL set the send jobs run on a real rq worker; without it they run
in-process after the commit, as in the embedded mode. Sending threads use
their own database connections, so these tests commit (transactional_db).
"""

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from campaigns import sending, services
from campaigns.models import (
    Campaign,
    Delivery,
    IllegalTransition,
    OutboxMessage,
    SendClaim,
    Suppression,
)
from campaigns.sending.claims import hand_over, handed_over
from incidents import services as incident_services
from incidents.actors import Actor
from incidents.models import AffectedPerson, AuditEntry, SendLogEntry
from incidents.services.audience import default_segment
from tests.conftest import requires_postgres
from tests.esp_stub import PostmarkStub
from tests.factories import freeze_people

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TEMPLATE = "registry-gift-purchased"
CONTENT = {
    "en": {
        "subject": "We sent you an email by mistake",
        "text": "Dear {{ first_name|default('customer') }}, we are sorry. "
        "Code: {{ verification_code }}. {{ incident_reference }}",
        "html": "<p>Dear {{ first_name|default('customer') }}, we are sorry.</p>"
        "<p>Code: {{ verification_code }}</p>",
    },
    "de": {
        "subject": "Wir haben Ihnen versehentlich eine E-Mail geschickt",
        "text": "Liebe/r {{ first_name|default('Kundin, lieber Kunde') }}, Entschuldigung. "
        "Code: {{ verification_code }}",
        "html": "",
    },
}
Status = Delivery.Status


@pytest.fixture(autouse=True)
def _sending_settings(transactional_audit, settings):
    """Fast, small settings; a Redis namespace of this test's own."""
    settings.SEND_RATE_LIMIT = 1000
    settings.SEND_CONCURRENCY = 4
    settings.SEND_RETRY_BASE_SECONDS = 0.05
    settings.SEND_CONTROL_CHECK_SECONDS = 0.05
    settings.SEND_MAX_INLINE_WAIT_SECONDS = 5
    settings.SEND_MAX_ATTEMPTS = 4
    settings.SEND_ERROR_WINDOW = 50
    settings.SEND_REDIS_PREFIX = f"amends-test:{time.monotonic_ns()}"
    if settings.REDIS_URL:
        import django_rq

        django_rq.get_queue("send").empty()


@pytest.fixture
def stub(settings, postmark_stub):
    settings.MAILERS = {"default": postmark_stub.mailer()}
    return postmark_stub


def drain():
    """Run the queued send jobs: on a real rq worker with REDIS_URL; in-process they already ran."""
    if not settings.REDIS_URL:
        return
    import django_rq
    from rq import SimpleWorker

    send_queue = django_rq.get_queue("send")
    failed_before = set(send_queue.failed_job_registry.get_job_ids())
    django_rq.get_worker("send", worker_class=SimpleWorker).work(burst=True)
    failed = set(send_queue.failed_job_registry.get_job_ids()) - failed_before
    assert not failed, [send_queue.fetch_job(i).latest_result().exc_string for i in failed]


def as_user(user):
    return Actor.for_user(user)


def add_people(incident, user, count, *, start=0, locales=("en", "de", "de-at", "fr")):
    rows = [
        (f"m{i}", f"Person{i}@Example.com ", locales[i % len(locales)], {"first_name": f"P{i}"})
        for i in range(start, start + count)
    ]
    freeze_people(incident, user, rows, template=TEMPLATE)
    return AffectedPerson.objects.filter(incident=incident)


@pytest.fixture
def segment(incident):
    return default_segment(incident)


@pytest.fixture
def people(incident, support_sam, segment):
    return list(add_people(incident, support_sam, 12))


def approved_version(segment, author, approver, **fields):
    version = services.version_create(
        by=as_user(author),
        segment=segment,
        sender_name="Amends Care",
        sender_address="care@retailer.example",
        reply_to="help@retailer.example",
        fallback_locale="en",
        content=fields.pop("content", CONTENT),
        **fields,
    )
    services.version_approve(version=version, by=as_user(approver))
    return version


@pytest.fixture
def version(segment, support_sam, comms_cleo):
    return approved_version(segment, support_sam, comms_cleo)


def launch(version, segment, user, **kwargs):
    campaign = services.campaign_launch(
        version=version, segment=segment, by=as_user(user), **kwargs
    )
    drain()
    campaign.refresh_from_db()
    return campaign


def counts(campaign) -> dict[str, int]:
    out: dict[str, int] = {}
    for status in campaign.deliveries.values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def actions():
    return list(AuditEntry.objects.order_by("seq").values_list("action", flat=True))


def in_thread_db(func):
    """For stub hooks: they run in the stub's thread, with its own database connection."""

    def hook(payload):
        try:
            func(payload)
        finally:
            connections.close_all()

    return hook


# --- Launching -----------------------------------------------------------------------------


def test_an_unapproved_version_cannot_be_launched(segment, people, support_sam, stub):
    version = services.version_create(
        by=as_user(support_sam),
        segment=segment,
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=CONTENT,
    )
    with pytest.raises(ValidationError, match="not approved"):
        launch(version, segment, support_sam)
    assert not Campaign.objects.exists() and not Delivery.objects.exists()
    assert stub.taken == 0


def test_an_edited_version_cannot_be_launched(segment, people, support_sam, comms_cleo, stub):
    version = approved_version(segment, support_sam, comms_cleo)
    # Edited in the database behind the approval's back: the hash no longer matches.
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # as a superuser could, skipping the trigger
            cursor.execute("SET LOCAL session_replication_role = replica")
        tampered = json.dumps({"en": CONTENT["en"] | {"text": "Claim your gift at evil.example"}})
        cast = "::jsonb" if connection.vendor == "postgresql" else ""
        cursor.execute(
            f"UPDATE campaigns_messageversion SET content = %s{cast} WHERE id = %s",
            [tampered, version.pk],
        )
    with pytest.raises(ValidationError, match="no longer matches"):
        launch(version, segment, support_sam)
    assert not Delivery.objects.exists() and stub.taken == 0


def test_an_older_version_cannot_be_launched_after_a_new_one_is_saved(
    segment, people, support_sam, comms_cleo, version
):
    services.version_create(
        by=as_user(support_sam),
        message=version.message,
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=CONTENT | {"fr": CONTENT["en"]},
    )
    with pytest.raises(ValidationError, match="not the latest"):
        launch(version, segment, support_sam)


def test_comms_cannot_launch(segment, people, comms_cleo, version):
    with pytest.raises(PermissionDenied):
        services.campaign_launch(version=version, segment=segment, by=as_user(comms_cleo))


def test_each_person_gets_exactly_one_message_with_one_recipient(
    segment, people, support_sam, version, stub, incident
):
    campaign = launch(version, segment, support_sam, batch_size=5)

    assert campaign.status == Campaign.Status.COMPLETED
    deliveries = list(campaign.deliveries.select_related("person"))
    assert len(deliveries) == len(people) == 12
    assert {d.person_id for d in deliveries} == {p.pk for p in people}
    assert all(d.status == Status.SENT for d in deliveries)
    # The stub took one message per delivery, never two.
    assert stub.accepted == {str(d.pk): 1 for d in deliveries}
    by_delivery = {r.delivery_id: r for r in stub.requests}
    for delivery in deliveries:
        payload = by_delivery[str(delivery.pk)].payload
        assert payload["To"] == delivery.person.original_address.strip()
        assert "," not in payload["To"] and "Cc" not in payload and "Bcc" not in payload
        assert payload["Metadata"] == {
            "delivery_id": str(delivery.pk),
            "incident": incident.reference,
            "campaign_id": str(campaign.pk),
        }
        assert payload["Tag"] == incident.reference
        headers = {h["Name"]: h["Value"] for h in payload["Headers"]}
        assert headers["X-Amends-Delivery"] == str(delivery.pk)
        # The ESP's message id is recorded, and the person's own code is in the text.
        assert delivery.esp_message_id and delivery.sent_at and delivery.attempts == 1
        assert delivery.verification_code in payload["TextBody"]
    german = next(d for d in deliveries if d.person.locale == "de-at")
    assert by_delivery[str(german.pk)].payload["Subject"].startswith("Wir haben")
    assert actions()[-2:] == ["campaign.launched", "campaign.completed"]
    launched = AuditEntry.objects.get(action="campaign.launched")
    assert launched.after["deliveries"] == 12 and launched.after["batches"] == 3


def test_a_slow_esp_gets_several_calls_in_flight_and_everyone_still_gets_one(
    segment, people, support_sam, version, stub, settings
):
    stub.delay = 0.05  # an ESP round trip: threads pay off
    launch(version, segment, support_sam)
    assert stub.peak_in_flight > 1
    assert sorted(stub.accepted.values()) == [1] * len(people)


def test_a_fast_esp_is_sent_to_one_call_at_a_time_from_the_job_itself(
    segment, people, support_sam, version, stub, settings
):
    settings.SEND_INLINE_CALL_SECONDS = 1  # every call counts as fast
    campaign = launch(version, segment, support_sam)
    assert stub.peak_in_flight == 1
    assert sorted(stub.accepted.values()) == [1] * len(people)
    assert set(campaign.deliveries.values_list("status", flat=True)) == {Status.SENT}


def test_once_a_job_found_the_esp_slow_the_next_starts_with_all_its_threads(
    segment, people, support_sam, version, stub
):
    stub.delay = 0.4  # wide margins: the calls' timing is what is asserted, on a busy machine
    campaign = launch(version, segment, support_sam, batch_size=6)  # two jobs, one by one

    ids = sorted(campaign.deliveries.values_list("id", flat=True))
    first_job, second_job = (
        sorted(r.at for r in stub.requests if int(r.delivery_id) in job)
        for job in (ids[:6], ids[6:])
    )
    # The first job learnt it with a probe: its first two calls were made one after the other.
    assert first_job[1] - first_job[0] >= stub.delay
    # The second job knew: its first two calls were in flight together.
    assert second_job[1] - second_job[0] < stub.delay / 2
    assert sorted(stub.accepted.values()) == [1] * len(people)


def test_verification_codes_are_short_unguessable_and_unique(segment, people, support_sam, version):
    services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    codes = list(Delivery.objects.values_list("verification_code", flat=True))
    assert len(set(codes)) == len(codes) == 12
    for code in codes:
        assert len(code) == 10 and set(code) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_a_verification_code_collision_is_retried_with_new_codes(
    segment, people, support_sam, version, monkeypatch
):
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL makes the codes in SQL")
    import campaigns.services.sending as service_module
    from campaigns.models import new_verification_code

    calls = iter(range(10**6))
    monkeypatch.setattr(
        service_module,
        "new_verification_code",
        lambda: "SAMECODE00" if next(calls) < 2 else new_verification_code(),
    )
    services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    codes = list(Delivery.objects.values_list("verification_code", flat=True))
    assert len(set(codes)) == len(codes) == 12


def test_a_second_campaign_for_the_same_people_needs_send_again_with_a_reason(
    segment, people, support_sam, version, stub
):
    first = launch(version, segment, support_sam)
    assert first.status == Campaign.Status.COMPLETED

    with pytest.raises(ValidationError, match="already has an apology"):
        launch(version, segment, support_sam)
    with pytest.raises(ValidationError, match="Say why"):
        launch(version, segment, support_sam, send_again=True)
    with pytest.raises(ValidationError, match="Say why"):
        launch(version, segment, support_sam, send_again=True, resend_reason="   ")
    assert Campaign.objects.count() == 1 and stub.taken == 12

    again = launch(version, segment, support_sam, resend_reason="The first one had a typo")
    assert again.is_resend and again.status == Campaign.Status.COMPLETED
    assert again.deliveries.filter(resend=True).count() == 12
    assert stub.taken == 24
    entry = AuditEntry.objects.filter(action="campaign.launched").last()
    assert entry.after["resend_reason"] == "The first one had a typo"
    assert entry.after["resends"] == 12


def test_the_database_refuses_a_second_apology_per_incident(
    segment, people, support_sam, version, incident
):
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    person = people[0]
    other = Campaign.objects.create(
        incident=incident,
        segment=segment,
        version=version,
        content_hash=version.content_hash,
        status=Campaign.Status.COMPLETED,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(campaign=other, incident=incident, person=person, address="x@y.z")
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(
            campaign=campaign, incident=incident, person=person, address="x@y.z", resend=True
        )
    # Only an explicit resend row, in another campaign, may exist beside the first.
    Delivery.objects.create(
        campaign=other, incident=incident, person=person, address="x@y.z", resend=True
    )


@requires_postgres
def test_the_database_refuses_a_delivery_whose_incident_is_not_its_campaigns(
    segment, people, support_sam, version, incident
):
    # One foreign key covers (campaign, incident) together (campaigns migration 0011).
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    elsewhere = incident_services.incident_open(
        title="Another mis-sent email",
        summary="A different incident.",
        severity="SEV3",
        by=as_user(support_sam),
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.filter(campaign=campaign).update(incident=elsewhere)
    assert Delivery.objects.filter(campaign=campaign, incident=incident).count() == len(people)


def test_one_unfinished_campaign_per_segment(segment, people, support_sam, version, settings):
    settings.MAILERS = {"default": {"BACKEND": "campaigns.mail.SandboxBackend"}}
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    campaign.refresh_from_db()
    if campaign.status == Campaign.Status.COMPLETED:  # embedded mode sent it already
        return
    with pytest.raises(ValidationError, match="is running"):
        services.campaign_launch(
            version=version, segment=segment, by=as_user(support_sam), resend_reason="again"
        )


# --- Suppression ----------------------------------------------------------------------------


def test_suppressed_people_are_recorded_and_never_sent_to(
    segment, people, support_sam, version, stub
):
    services.suppression_add(
        address=people[0].address, reason="complaint", source="manual", by=as_user(support_sam)
    )
    late = people[-1]

    def suppress_late(payload):
        # Suppressed after launch, while the campaign is sending: still skipped.
        services.suppression_add(
            address=late.address, reason="unsubscribed", source="webhook", by=Actor.system("t")
        )

    stub.on_accept = in_thread_db(suppress_late)
    campaign = launch(version, segment, support_sam, batch_size=2)
    by_person = {d.person_id: d for d in campaign.deliveries.all()}
    assert by_person[people[0].pk].status == Status.SUPPRESSED
    assert by_person[late.pk].status == Status.SUPPRESSED
    assert stub.accepted[str(by_person[people[0].pk].pk)] == 0
    assert stub.accepted[str(by_person[late.pk].pk)] == 0
    assert counts(campaign) == {Status.SENT: 10, Status.SUPPRESSED: 2}
    assert AuditEntry.objects.get(action="campaign.launched").after["suppressed"] == 1


# --- ESP errors -----------------------------------------------------------------------------


def test_a_429_is_honoured_with_its_retry_after(
    segment, people, support_sam, version, stub, settings
):
    settings.SEND_CONCURRENCY = 1  # with more, calls already in flight still arrive
    stub.answer_next(429, retry_after=1)
    campaign = launch(version, segment, support_sam)

    assert counts(campaign) == {Status.SENT: 12}
    assert stub.accepted.most_common(1)[0][1] == 1 and stub.taken == 12
    throttled = next(r for r in stub.requests if r.status == 429)
    after = [r for r in stub.requests if r.at > throttled.at]
    assert len(after) == 12 and min(r.at for r in after) - throttled.at >= 0.95
    retried = Delivery.objects.get(pk=int(throttled.delivery_id))
    assert retried.status == Status.SENT and retried.attempts == 1  # a 429 is not an attempt


def test_a_transient_error_is_retried_with_backoff_then_sent(
    segment, people, support_sam, version, stub, settings
):
    stub.answer_next(500, times=2, address=people[0].original_address.strip())
    campaign = launch(version, segment, support_sam)

    assert counts(campaign) == {Status.SENT: 12} and stub.taken == 12
    first = campaign.deliveries.get(person=people[0])
    tries = stub.requests_for(first.pk)
    assert [r.status for r in tries] == [500, 500, 200]
    assert tries[1].at - tries[0].at >= 0.05 and tries[2].at - tries[1].at >= 0.1  # backoff
    assert first.attempts == 3 and first.error == ""


def test_a_transient_error_gives_up_after_the_last_attempt(
    segment, people, support_sam, version, stub, settings
):
    settings.SEND_MAX_ATTEMPTS = 2
    stub.answer_next(503, times=2, address=people[5].original_address.strip())
    campaign = launch(version, segment, support_sam)

    failed = campaign.deliveries.get(status=Status.FAILED)
    assert failed.person_id == people[5].pk
    assert failed.attempts == 2 and failed.error.startswith("Gave up after 2 attempts")
    assert counts(campaign) == {Status.SENT: 11, Status.FAILED: 1}


def test_a_permanent_rejection_is_recorded_with_the_esps_reason(
    segment, people, support_sam, version, stub
):
    stub.reject(people[1].original_address.strip())
    stub.reject(people[2].original_address.strip(), code=300)
    campaign = launch(version, segment, support_sam)

    inactive = campaign.deliveries.get(person=people[1])
    invalid = campaign.deliveries.get(person=people[2])
    assert inactive.status == invalid.status == Status.FAILED
    assert "marked as inactive" in inactive.error and "406" in inactive.error
    assert "Invalid 'To' address" in invalid.error
    assert inactive.attempts == 1  # never retried
    assert counts(campaign) == {Status.SENT: 10, Status.FAILED: 2}


def test_an_answer_lost_after_the_request_left_is_uncertain_and_never_retried(
    segment, people, support_sam, version, stub, settings
):
    # The ESP takes the message but answers after the client gave up (a read timeout):
    # sending again could be a second apology, so nobody does without a person's decision.
    settings.MAILERS = {"default": stub.mailer(timeout=0.3)}
    slow = people[4].original_address.strip()
    stub.slow(slow, 1)
    campaign = launch(version, segment, support_sam)

    lost = campaign.deliveries.get(person=people[4])
    assert lost.status == Status.UNCERTAIN and "answer was lost" in lost.error
    assert stub.accepted[str(lost.pk)] == 1 and len(stub.requests_for(lost.pk)) == 1
    assert AuditEntry.objects.get(action="delivery.uncertain").actor_label == "system:sender"
    later = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)
    sending.sweep(now=later)
    drain()
    assert len(stub.requests_for(lost.pk)) == 1
    assert counts(campaign) == {Status.SENT: 11, Status.UNCERTAIN: 1}


def test_every_person_is_accounted_for_at_the_end(
    segment, people, support_sam, version, stub, settings
):
    settings.MAILERS = {"default": stub.mailer(timeout=0.3)}
    services.suppression_add(
        address=people[0].address, reason="complaint", source="manual", by=as_user(support_sam)
    )
    stub.reject(people[1].original_address.strip())
    stub.slow(people[2].original_address.strip(), 1)
    stub.answer_next(500, address=people[3].original_address.strip())
    campaign = launch(version, segment, support_sam)

    state = counts(campaign)
    assert state == {Status.SENT: 9, Status.SUPPRESSED: 1, Status.FAILED: 1, Status.UNCERTAIN: 1}
    total = sum(state[s] for s in (Status.SENT, Status.FAILED, Status.SUPPRESSED, Status.UNCERTAIN))
    assert total == segment.people.filter(removed_at=None).count() == 12
    assert campaign.status == Campaign.Status.COMPLETED
    assert max(stub.accepted.values()) == 1


def test_a_refused_connection_is_retried_since_nothing_left(
    segment, people, support_sam, version, settings
):
    settings.MAILERS = {
        "default": {
            "BACKEND": "anymail.backends.postmark.EmailBackend",
            "OPTIONS": {"server_token": "x", "api_url": "http://127.0.0.1:9/", "timeout": 1},
        }
    }
    settings.SEND_MAX_ATTEMPTS = 2
    campaign = launch(version, segment, support_sam)

    assert counts(campaign) == {Status.FAILED: 12}
    delivery = campaign.deliveries.first()
    assert delivery.attempts == 2
    assert delivery.error.startswith("Gave up after 2 attempts: No connection to the ESP")


def test_a_high_error_rate_pauses_the_campaign_and_says_why(
    segment, people, support_sam, version, stub, settings
):
    settings.SEND_ERROR_WINDOW = 4
    settings.SEND_RETRY_BASE_SECONDS = 10  # retries wait; the pause comes first
    stub.answer_next(503, times=100)
    campaign = launch(version, segment, support_sam)

    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.paused_reason.startswith("Paused automatically: 4 of the last 4 ESP calls")
    assert "503" in campaign.paused_reason
    assert stub.taken == 0
    entry = AuditEntry.objects.get(action="campaign.auto_paused")
    assert entry.actor_label == "system:sender"
    assert set(counts(campaign)) == {Status.QUEUED}


# --- Control ----------------------------------------------------------------------------------


def pause_once_the_stub_took(stub, messages: int, *, by) -> None:
    """Pause the campaign ("Legal") from the stub's thread once it has taken `messages`."""
    paused = threading.Event()

    def pause(payload):
        if stub.taken >= messages and not paused.is_set():
            paused.set()
            campaign = Campaign.objects.get()
            services.campaign_pause(campaign=campaign, by=as_user(by), reason="Legal")

    stub.on_accept = in_thread_db(pause)


def test_pause_stops_sending_and_resume_finishes_without_resending_anyone(
    incident, segment, support_sam, version, stub, settings
):
    settings.SEND_CONCURRENCY = 2
    stub.delay = 0.05  # an ESP round trip, so that pausing lands mid-batch
    add_people(incident, support_sam, 40, start=100)
    pause_once_the_stub_took(stub, 5, by=support_sam)
    campaign = launch(version, segment, support_sam, batch_size=20)
    time.sleep(0.2)

    assert campaign.status == Campaign.Status.PAUSED and campaign.paused_reason == "Legal"
    at_pause = stub.taken
    assert 5 <= at_pause < 20  # within a control check (0.05 s) of the pause
    state = counts(campaign)
    assert state[Status.SENT] == at_pause and state[Status.QUEUED] == 40 - at_pause
    assert Status.SENDING not in state  # claimed, unsent rows went back to the queue

    stub.on_accept = None
    services.campaign_resume(campaign=campaign, by=as_user(support_sam))
    drain()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert counts(campaign) == {Status.SENT: 40}
    assert stub.taken == 40 and max(stub.accepted.values()) == 1
    assert [a for a in actions() if a.startswith("campaign.")] == [
        "campaign.launched",
        "campaign.paused",
        "campaign.resumed",
        "campaign.completed",
    ]


def test_pause_reaches_a_job_sending_from_its_own_thread_while_it_waits_for_its_rate(
    incident, segment, support_sam, version, stub, settings
):
    settings.SEND_INLINE_CALL_SECONDS = 1  # a fast ESP: the job sends from its own thread
    add_people(incident, support_sam, 30, start=100)
    pause_once_the_stub_took(stub, 3, by=support_sam)
    campaign = launch(version, segment, support_sam, rate_limit=5)  # one message each 0.2 s

    assert campaign.status == Campaign.Status.PAUSED
    assert stub.peak_in_flight == 1
    at_pause = stub.taken
    assert 3 <= at_pause <= 5  # the wait for the next token looks at the campaign
    state = counts(campaign)
    assert state == {Status.SENT: at_pause, Status.QUEUED: 30 - at_pause}


def test_a_campaign_refuses_moves_its_state_does_not_allow(
    segment, people, support_sam, version, incident
):
    def campaign_in(status):
        return Campaign.objects.create(
            incident=incident,
            segment=segment,
            version=version,
            content_hash=version.content_hash,
            status=status,
        )

    paused = campaign_in(Campaign.Status.PAUSED)
    with pytest.raises(IllegalTransition, match="paused campaign cannot become paused"):
        services.campaign_pause(campaign=paused, by=as_user(support_sam))
    with pytest.raises(IllegalTransition, match="paused campaign cannot become completed"):
        paused.complete()
    services.campaign_cancel(campaign=paused, by=as_user(support_sam))
    paused.refresh_from_db()
    assert paused.status == Campaign.Status.CANCELLED and paused.finished_at
    with pytest.raises(IllegalTransition, match="cancelled campaign cannot become running"):
        paused.resume()
    with pytest.raises(ValidationError, match="Only a paused campaign"):
        services.campaign_resume(campaign=paused, by=as_user(support_sam))
    completed = campaign_in(Campaign.Status.COMPLETED)
    with pytest.raises(IllegalTransition, match="completed campaign cannot become cancelled"):
        services.campaign_cancel(campaign=completed, by=as_user(support_sam))


def test_cancel_stops_for_good_and_nothing_more_is_sent(
    incident, segment, support_sam, version, stub, settings
):
    settings.SEND_CONCURRENCY = 1
    stub.delay = 0.05
    add_people(incident, support_sam, 20, start=200)

    def cancel_after_three(payload):
        if stub.taken == 3:
            services.campaign_cancel(campaign=Campaign.objects.get(), by=as_user(support_sam))

    stub.on_accept = in_thread_db(cancel_after_three)
    campaign = launch(version, segment, support_sam)
    state = counts(campaign)
    assert campaign.status == Campaign.Status.CANCELLED and campaign.finished_at
    assert state[Status.SENT] == stub.taken and 3 <= stub.taken < 10
    assert state[Status.CANCELLED] == 20 - stub.taken

    report = sending.sweep()
    drain()
    assert report["batches"] == 0 and stub.taken == counts(campaign)[Status.SENT]
    # Rows claimed when the cancel came are cancelled by their worker, not counted here.
    assert AuditEntry.objects.filter(action="campaign.cancelled").count() == 1


# --- Crashes and lost jobs -----------------------------------------------------------------------


def hand_over_all(ids):
    """What a worker does right before each ESP call (campaigns.sending.claims.hand_over)."""
    return [hand_over(d) for d in Delivery.objects.filter(pk__in=ids).order_by("id")]


def test_a_crashed_worker_leaves_uncertain_deliveries_that_are_never_resent(
    segment, people, support_sam, version, stub, settings
):
    # A worker claimed three deliveries, handed them to the ESP and died (SIGKILL)
    # before recording any answer.
    with transaction.atomic():
        campaign = services.campaign_launch(
            version=version, segment=segment, by=as_user(support_sam)
        )
        crashed = sending.claim(campaign.pk, 0, 10**12, 3)
        assert hand_over_all(crashed) == [True, True, True]
    drain()
    assert counts(campaign) == {Status.SENT: 9, Status.SENDING: 3}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING  # not finished while rows are in flight

    # Before the lease runs out, the sweeper leaves them alone.
    assert sending.sweep()["uncertain"] == 0
    # One of them did reach the ESP: a webhook event carrying its delivery id says so.
    SendLogEntry.objects.create(
        message_id="esp-evidence-1",
        recipient="x@example.com",
        address="x@example.com",
        sent_at=timezone.now(),
        metadata={"delivery_id": str(crashed[0]), "incident": campaign.incident.reference},
        source=SendLogEntry.Source.WEBHOOK,
    )
    later = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)
    report = sending.sweep(now=later)
    drain()
    assert report["recovered_sent"] == 1 and report["uncertain"] == 2
    recovered = Delivery.objects.get(pk=crashed[0])
    assert recovered.status == Status.SENT and recovered.esp_message_id == "esp-evidence-1"
    uncertain = list(Delivery.objects.filter(pk__in=crashed[1:]))
    assert {d.status for d in uncertain} == {Status.UNCERTAIN}
    assert all("may have been sent" in d.error for d in uncertain)
    assert not any(stub.accepted[str(pk)] for pk in crashed)  # never resent by the machine
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    state = counts(campaign)
    assert state[Status.SENT] + state[Status.UNCERTAIN] == len(people)
    assert AuditEntry.objects.get(action="delivery.uncertain").after["count"] == 2

    # A person decides: one is counted as sent, the other sent again.
    with pytest.raises(ValidationError, match="Say why"):
        services.delivery_resolve_uncertain(
            delivery=uncertain[0], decision="resend", by=as_user(support_sam), reason=""
        )
    services.delivery_resolve_uncertain(
        delivery=uncertain[0],
        decision="mark_sent",
        by=as_user(support_sam),
        reason="The customer confirmed by phone",
    )
    services.delivery_resolve_uncertain(
        delivery=uncertain[1], decision="resend", by=as_user(support_sam), reason="ESP has no trace"
    )
    drain()
    assert stub.accepted[str(uncertain[1].pk)] == 1 and stub.accepted[str(uncertain[0].pk)] == 0
    assert counts(campaign) == {Status.SENT: 12}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    decisions = AuditEntry.objects.filter(action="delivery.uncertain_resolved")
    assert [e.after["decision"] for e in decisions.order_by("seq")] == ["mark_sent", "resend"]


def test_rows_a_crashed_worker_claimed_but_never_handed_over_are_sent_once_after_all(
    segment, people, support_sam, version, stub, settings
):
    # A worker claimed four deliveries and died before its first ESP call: the ESP
    # never saw them, so they go back to the queue instead of becoming uncertain.
    with transaction.atomic():
        campaign = services.campaign_launch(
            version=version, segment=segment, by=as_user(support_sam)
        )
        crashed = sending.claim(campaign.pk, 0, 10**12, 4)
    drain()
    assert counts(campaign) == {Status.SENT: 8, Status.SENDING: 4}

    later = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)
    report = sending.sweep(now=later)
    assert report["requeued"] == 4 and report["uncertain"] == 0
    assert report["batches"] == 1  # queued again, so enqueued again at once
    drain()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert counts(campaign) == {Status.SENT: 12}
    assert all(stub.accepted[str(pk)] == 1 for pk in crashed)
    assert max(stub.accepted.values()) == 1
    assert set(Delivery.objects.filter(pk__in=crashed).values_list("attempts", flat=True)) == {1}
    assert not AuditEntry.objects.filter(action="delivery.uncertain").exists()


def test_a_worker_never_sends_a_row_the_sweeper_took_back(
    segment, people, support_sam, version, stub, settings, monkeypatch
):
    from campaigns import jobs

    monkeypatch.setattr(jobs, "enqueue_batches", lambda *args: None)  # nothing runs by itself
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    # Worker A claimed a row and stalled past its lease; the sweeper queued it again.
    (first,) = sending.claim(campaign.pk, 0, 10**12, 1)
    stalled = Delivery.objects.get(pk=first)
    later = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)
    assert sending.sweep(now=later)["requeued"] == 1
    assert not hand_over(stalled)  # A wakes up: the row is no longer its to send

    # Worker B claims it again; A, still holding its old copy, can neither send nor release it.
    assert sending.claim(campaign.pk, first, first, 1) == [first]
    assert not hand_over(stalled)
    assert hand_over_all([first]) == [True]  # B can, once
    assert hand_over_all([first]) == [False]
    assert sending.release([first]) == 0  # a handed row is never queued again by a worker
    row = Delivery.objects.get(pk=first)
    assert row.status == Status.SENDING and row.attempts == 1
    assert handed_over(Delivery.objects.filter(pk=first)).exists()


def test_a_row_is_not_handed_over_with_less_than_half_its_lease_left(
    segment, people, support_sam, version, settings, monkeypatch
):
    from campaigns import jobs

    monkeypatch.setattr(jobs, "enqueue_batches", lambda *args: None)
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    (pk,) = sending.claim(campaign.pk, 0, 10**12, 1)
    short = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS / 2 - 1)
    Delivery.objects.filter(pk=pk).update(lease_until=short)
    SendClaim.objects.update(lease_until=short)
    assert hand_over_all([pk]) == [False]
    assert sending.release([pk]) == 1  # still this worker's, never handed: back to the queue


@pytest.fixture
def idle_campaign(segment, people, support_sam, version, monkeypatch):
    """A launched campaign whose jobs never run: the test claims and hands over itself."""
    from campaigns import jobs

    monkeypatch.setattr(jobs, "enqueue_batches", lambda *args: None)
    return services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))


def test_hand_overs_committed_together_keep_each_groups_own_conditions(idle_campaign, settings):
    from campaigns.sending.claims import HandOver

    campaign = idle_campaign
    first = sending.claim(campaign.pk, 0, 10**12, 4)
    short = sending.claim(campaign.pk, 0, 10**12, 2)  # a claim whose lease is nearly over
    SendClaim.objects.filter(pk=Delivery.objects.get(pk=short[0]).claim_id).update(
        lease_until=timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS / 2 - 1)
    )
    rows = {d.pk: d for d in Delivery.objects.filter(pk__in=first + short)}
    a, b, c, d = (rows[pk] for pk in first)
    writer = HandOver()
    try:
        # Submitted back to back, so the writer may mark several in one transaction.
        asks = [writer.submit(group) for group in ([a, b], [rows[pk] for pk in short], [c], [b])]
        answers = [writer.wait(ask) for ask in asks]
        assert answers == [{a.pk, b.pk}, set(), {c.pk}, set()]  # b: handed once per claim
        assert writer([d]) == {d.pk}
    finally:
        writer.close()
    assert set(handed_over(Delivery.objects.all()).values_list("id", flat=True)) == set(first)


def test_a_claim_hands_its_rows_over_in_id_order_and_each_only_once(idle_campaign):
    from campaigns.sending.claims import hand_over_many

    ids = sending.claim(idle_campaign.pk, 0, 10**12, 5)
    rows = list(Delivery.objects.filter(pk__in=ids).order_by("id"))
    assert hand_over_many(rows[2:4]) == set(ids[2:4])
    assert hand_over_many(rows[:2]) == set()  # behind what was handed: never sent now
    assert hand_over_many(rows[3:]) == set()  # overlaps it: nothing of the group
    # Only the row past what was handed may go back to the queue; the two behind it count as
    # handed (the cautious side: a worker never sends out of order).
    assert sending.release(ids) == 1
    assert Delivery.objects.get(pk=ids[4]).status == Status.QUEUED
    assert hand_over_many(rows[4:]) == set()  # released: no longer this claim's to send


def test_the_sandbox_outbox_is_evidence_that_a_message_went_out(
    segment, people, support_sam, version, settings
):
    settings.MAILERS = {"default": {"BACKEND": "campaigns.mail.SandboxBackend"}}
    with transaction.atomic():
        campaign = services.campaign_launch(
            version=version, segment=segment, by=as_user(support_sam)
        )
        (claimed,) = sending.claim(campaign.pk, 0, 10**12, 1)
    drain()
    OutboxMessage.objects.create(
        message_id="<sandbox-evidence@amends.local>",
        from_email="care@retailer.example",
        subject="s",
        headers={"X-Amends-Delivery": str(claimed)},
    )
    later = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)
    assert sending.sweep(now=later)["recovered_sent"] == 1
    delivery = Delivery.objects.get(pk=claimed)
    assert delivery.status == Status.SENT
    assert delivery.esp_message_id == "<sandbox-evidence@amends.local>"


def test_the_sweeper_enqueues_lost_work_again_and_the_campaign_completes(
    segment, people, support_sam, version, stub, settings, monkeypatch
):
    settings.SWEEP_STALE_SECONDS = 0
    if settings.REDIS_URL:
        import django_rq

        campaign = services.campaign_launch(
            version=version, segment=segment, by=as_user(support_sam), batch_size=5
        )
        django_rq.get_queue("send").empty()  # a Redis flush: every job is gone
    else:
        from campaigns import jobs

        monkeypatch.setattr(jobs, "enqueue_batches", lambda *args: None)  # jobs lost
        campaign = services.campaign_launch(
            version=version, segment=segment, by=as_user(support_sam), batch_size=5
        )
        monkeypatch.undo()
    drain()
    assert counts(campaign) == {Status.QUEUED: 12} and stub.taken == 0

    report = sending.sweep(now=timezone.now() + timedelta(seconds=1))
    assert report["batches"] == 3
    drain()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert counts(campaign) == {Status.SENT: 12}
    assert stub.taken == 12 and max(stub.accepted.values()) == 1


def test_the_sweep_command_reports_what_it_did(segment, people, support_sam, version, stub):
    from io import StringIO

    from django.core.management import call_command

    launch(version, segment, support_sam)
    out = StringIO()
    call_command("sweep_deliveries", stdout=out)
    assert "0 uncertain" in out.getvalue() and "0 batches enqueued again" in out.getvalue()


def test_a_running_campaign_that_makes_progress_is_left_alone_by_the_sweeper(
    segment, people, support_sam, version, settings, monkeypatch
):
    from campaigns import jobs

    monkeypatch.setattr(jobs, "enqueue_batches", lambda *args: None)
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    Campaign.objects.filter(pk=campaign.pk).update(last_claim_at=timezone.now())
    assert sending.sweep()["batches"] == 0


# --- Growing incidents -------------------------------------------------------------------------


def test_a_top_up_sends_only_to_people_added_after_launch(
    incident, segment, people, support_sam, version, stub
):
    campaign = launch(version, segment, support_sam)
    assert campaign.status == Campaign.Status.COMPLETED and stub.taken == 12

    add_people(incident, support_sam, 3, start=50)
    added = services.campaign_top_up(campaign=campaign, by=as_user(support_sam))
    drain()
    campaign.refresh_from_db()
    assert added == 3
    assert campaign.status == Campaign.Status.COMPLETED
    assert counts(campaign) == {Status.SENT: 15}
    assert stub.taken == 15 and max(stub.accepted.values()) == 1
    assert services.campaign_top_up(campaign=campaign, by=as_user(support_sam)) == 0
    assert AuditEntry.objects.filter(action="campaign.topped_up").count() == 2


def test_a_top_up_needs_the_text_that_was_approved_at_launch(
    incident, segment, people, support_sam, comms_cleo, version, stub
):
    campaign = launch(version, segment, support_sam)
    services.version_create(
        by=as_user(support_sam),
        message=version.message,
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=CONTENT | {"fr": CONTENT["en"]},
    )
    add_people(incident, support_sam, 2, start=60)
    with pytest.raises(ValidationError, match="not the latest"):
        services.campaign_top_up(campaign=campaign, by=as_user(support_sam))


def test_people_removed_from_the_list_are_not_sent_to(
    incident, segment, people, support_sam, version, stub
):
    incident_services.affected_remove(
        person=people[3], reason="Not a customer", by=as_user(support_sam)
    )
    campaign = launch(version, segment, support_sam)
    assert campaign.deliveries.count() == 11
    assert not campaign.deliveries.filter(person=people[3]).exists()


# --- Rate limit -------------------------------------------------------------------------------


def test_the_rate_limit_holds_across_workers(settings):
    bucket = sending.limiter()
    waits = [bucket.take(999_001, 10, "default") for _ in range(3)]
    assert waits[0] == 0 and waits[1] > 0  # one token per tenth of a second at 10/s
    bucket.hold("held-mailer", 0.5)
    assert bucket.take(999_002, 1000, "held-mailer") > 0.3  # an ESP 429 holds every campaign


def test_the_rate_limit_paces_a_campaign(segment, people, support_sam, version, stub):
    started = time.monotonic()
    campaign = launch(version, segment, support_sam, rate_limit=20)
    elapsed = time.monotonic() - started
    assert counts(campaign) == {Status.SENT: 12}
    sends = sorted(r.at for r in stub.requests)
    assert sends[-1] - sends[0] >= 0.45 and elapsed >= 0.45  # 12 at 20/s, 2 in the first burst


# --- The embedded demo ---------------------------------------------------------------------------


def test_the_demo_sends_in_embedded_mode_into_the_outbox(
    segment, people, support_sam, version, settings, incident
):
    settings.REDIS_URL = ""
    settings.MAILERS = {"default": {"BACKEND": "campaigns.mail.SandboxBackend"}}
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    campaign.refresh_from_db()

    assert campaign.status == Campaign.Status.COMPLETED
    kept = {m.headers["X-Amends-Delivery"]: m for m in OutboxMessage.objects.all()}
    assert len(kept) == 12
    for delivery in campaign.deliveries.select_related("person"):
        message = kept[str(delivery.pk)]
        assert delivery.status == Status.SENT and delivery.esp_message_id == message.message_id
        assert message.to == [delivery.address]
        assert delivery.verification_code in message.text
        assert message.headers["X-Amends-Incident"] == incident.reference
    assert Suppression.objects.count() == 0


def test_rows_marked_but_never_given_to_the_esp_go_back_to_the_queue_only_for_their_own_claim(
    idle_campaign,
):
    from campaigns.sending.claims import hand_back, hand_over_many

    campaign = idle_campaign
    ids = sending.claim(campaign.pk, 0, 10**12, 3)
    rows = list(Delivery.objects.filter(pk__in=ids).order_by("id"))
    assert hand_over_many(rows) == set(ids)
    ours, theirs, kept = rows
    theirs.claim_id = SendClaim.objects.create(campaign=campaign, lease_until=theirs.lease_until).pk

    assert hand_back([ours, theirs]) == 1

    ours.refresh_from_db()
    assert (ours.status, ours.attempts) == (Delivery.Status.QUEUED, 0)
    assert Delivery.objects.get(pk=theirs.pk).status == Delivery.Status.SENDING
    assert handed_over(Delivery.objects.filter(pk=kept.pk)).exists()


def test_the_esp_stub_takes_nothing_from_a_request_cut_off_before_its_body():
    # A worker SIGKILLed mid-request leaves the ESP headers and no message; counting that as
    # a message taken made the chaos test see "duplicates" of an empty delivery id.
    import socket
    from urllib.parse import urlsplit

    stub = PostmarkStub().start()
    try:
        address = urlsplit(stub.url)
        with socket.create_connection((address.hostname, address.port)) as sock:
            sock.sendall(
                b"POST /email HTTP/1.1\r\nHost: stub\r\nContent-Type: application/json\r\n"
                b"X-Postmark-Server-Token: stub-server-token\r\nContent-Length: 200\r\n\r\n"
            )
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1024) == b""  # no answer: nothing was sent
        assert stub.taken == 0 and not stub.accepted
    finally:
        stub.stop()


def test_a_worker_releases_only_rows_still_under_its_own_claim(
    segment, people, support_sam, version, monkeypatch
):
    from campaigns import jobs

    monkeypatch.setattr(jobs, "enqueue_batches", lambda *args: None)
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    ours, taken = sending.claim(campaign.pk, 0, 10**12, 2)
    lease = Delivery.objects.get(pk=ours).lease_until
    # Our lease ran out; the sweeper queued `taken` again and another job claimed it.
    Delivery.objects.filter(pk=taken).update(lease_until=lease + timedelta(seconds=30))

    assert sending.release([ours, taken], lease=lease) == 1

    assert Delivery.objects.get(pk=ours).status == Delivery.Status.QUEUED
    assert Delivery.objects.get(pk=taken).status == Delivery.Status.SENDING
