"""Recording ESP answers in batches (campaigns/sending/recorder.py), and the job's other savings.

The recorder writes many answers with one conditional UPDATE. These tests hold
it to the rules of one-at-a-time writes: each answer lands as the state rules
say, a row that someone else moved meanwhile is left alone, and until the
batch commits the row stays `sending` for the sweeper. Both setups run them
(PostgreSQL and SQLite have their own SQL for the VALUES list).
"""

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from campaigns import jobs, sending, services
from campaigns.models import Delivery, SendClaim
from campaigns.rendering import Renderer, choose_locale, render_context, render_version
from campaigns.sending.claims import hand_over, hand_over_many, handed_over
from campaigns.sending.limits import _LocalLimiter
from campaigns.sending.outcomes import Outcome, change_for
from campaigns.sending.recorder import Recorder, write, write_and_audit
from incidents.models import AuditEntry
from tests.conftest import requires_postgres
from tests.test_sending import CONTENT, add_people, approved_version, as_user

Status = Delivery.Status


@pytest.fixture(autouse=True)
def _settings(transactional_audit, settings):
    settings.SEND_MAX_ATTEMPTS = 3
    settings.SEND_RETRY_BASE_SECONDS = 2


@pytest.fixture
def claimed_only(incident, support_sam, comms_cleo, monkeypatch):
    """Eight deliveries of a running campaign, claimed (`sending`), not handed over yet."""
    from incidents.services.audience import default_segment

    segment = default_segment(incident)
    add_people(incident, support_sam, 8)
    version = approved_version(segment, support_sam, comms_cleo)
    monkeypatch.setattr(jobs, "enqueue_batches", lambda *args: None)  # no worker runs
    campaign = services.campaign_launch(version=version, segment=segment, by=as_user(support_sam))
    ids = sending.claim(campaign.pk, 0, 10**12, 100)
    return list(Delivery.objects.filter(pk__in=ids).order_by("id"))


@pytest.fixture
def claimed(claimed_only):
    """The same eight deliveries, handed to the ESP."""
    deliveries = claimed_only
    for delivery in deliveries:
        assert hand_over(delivery)
    return deliveries


def fresh(delivery):
    return Delivery.objects.get(pk=delivery.pk)


def test_a_batch_of_mixed_answers_lands_with_the_right_statuses(claimed, incident, settings):
    now = timezone.now()
    sent, throttled, retry, gave_up, failed, uncertain, *_ = claimed
    Delivery.objects.filter(pk=gave_up.pk).update(attempts=settings.SEND_MAX_ATTEMPTS)
    gave_up.refresh_from_db()
    answers = [
        (sent, Outcome("sent", message_id="esp-1")),
        (throttled, Outcome("throttled", "ESP rate limit (429)", 30)),
        (retry, Outcome("retry", "Stub answer 503")),
        (gave_up, Outcome("retry", "Stub answer 503")),
        (failed, Outcome("failed", "Inactive recipient (ESP error 406)")),
        (uncertain, Outcome("uncertain", "The ESP's answer was lost: read timeout")),
    ]
    batch = [(change_for(d, outcome, now), d) for d, outcome in answers]

    applied = write_and_audit(batch, campaign_id=sent.campaign_id, incident=incident)

    assert applied == {d.pk for d, _ in answers}
    row = fresh(sent)
    assert (row.status, row.esp_message_id, row.sent_at, row.error) == (
        Status.SENT,
        "esp-1",
        now,
        "",
    )
    assert row.lease_until is None and row.attempts == 1
    row = fresh(throttled)
    assert row.status == Status.QUEUED and row.attempts == 0  # a 429 is not an attempt
    assert row.next_attempt_at == now + timedelta(seconds=30) and "429" in row.error
    row = fresh(retry)
    assert row.status == Status.QUEUED and row.attempts == 1
    assert row.next_attempt_at == now + timedelta(seconds=2) and row.error == "Stub answer 503"
    row = fresh(gave_up)
    assert row.status == Status.FAILED and row.error == "Gave up after 3 attempts: Stub answer 503"
    row = fresh(failed)
    assert row.status == Status.FAILED and "406" in row.error and row.sent_at is None
    row = fresh(uncertain)
    assert row.status == Status.UNCERTAIN and "read timeout" in row.error
    assert all(fresh(d).lease_until is None for d, _ in answers)
    entry = AuditEntry.objects.get(action="delivery.uncertain")
    assert entry.object_id == str(uncertain.pk) and "read timeout" in entry.after["reason"]
    assert entry.incident == incident
    # The two left out of the batch are untouched.
    assert {fresh(d).status for d in claimed[6:]} == {Status.SENDING}


def test_a_row_the_sweeper_already_moved_is_not_overwritten(claimed):
    now = timezone.now()
    gone_uncertain, late_sent, requeued, cancelled, *_ = claimed
    # The sweeper gave up on two rows, a person queued one again, the campaign cancelled one.
    Delivery.objects.filter(pk__in=[gone_uncertain.pk, late_sent.pk]).update(
        status=Status.UNCERTAIN, lease_until=None, error="lease expired"
    )
    Delivery.objects.filter(pk=requeued.pk).update(status=Status.QUEUED, lease_until=None)
    Delivery.objects.filter(pk=cancelled.pk).update(status=Status.CANCELLED, lease_until=None)
    batch = [
        change_for(gone_uncertain, Outcome("failed", "refused"), now),
        change_for(late_sent, Outcome("sent", message_id="esp-late"), now),
        change_for(requeued, Outcome("sent", message_id="esp-x"), now),
        change_for(cancelled, Outcome("retry", "503"), now),
    ]

    assert write(batch) == {late_sent.pk}

    assert (fresh(gone_uncertain).status, fresh(gone_uncertain).error) == (
        Status.UNCERTAIN,
        "lease expired",
    )
    # A late "sent" is the evidence an uncertain row waited for.
    assert (fresh(late_sent).status, fresh(late_sent).esp_message_id) == (Status.SENT, "esp-late")
    assert fresh(requeued).status == Status.QUEUED and fresh(requeued).esp_message_id == ""
    assert fresh(cancelled).status == Status.CANCELLED


def test_an_answer_is_not_written_over_a_newer_claim_of_the_same_row(claimed):
    old = claimed[0]
    # Lost to the sweeper, queued again by a person and claimed by another worker.
    new_lease = timezone.now() + timedelta(seconds=999)
    Delivery.objects.filter(pk=old.pk).update(lease_until=new_lease)

    assert write([change_for(old, Outcome("failed", "refused"), timezone.now())]) == set()
    row = fresh(old)
    assert row.status == Status.SENDING and row.lease_until == new_lease


def test_answers_stay_sending_until_their_batch_commits_and_the_sweeper_handles_a_crash(
    claimed, settings
):
    recorded, lost = claimed[0], claimed[1]
    recorder = Recorder(campaign_id=recorded.campaign_id, incident=None, seconds=60, rows=1000)
    try:
        recorder.put(
            change_for(recorded, Outcome("sent", message_id="esp-1"), timezone.now()), recorded
        )
        recorder.put(change_for(lost, Outcome("sent", message_id="esp-2"), timezone.now()), lost)
        time.sleep(0.2)
        # Answered by the ESP, not committed yet: a crash now leaves both `sending`.
        assert {fresh(recorded).status, fresh(lost).status} == {Status.SENDING}

        # Say the worker died here: after the lease, the sweeper calls handed rows uncertain.
        later = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)
        report = sending.sweep(now=later)
        assert report["uncertain"] == len(claimed) and fresh(lost).status == Status.UNCERTAIN
    finally:
        assert recorder.close()
    # Had it lived, its late answers are the evidence: uncertain becomes sent.
    assert fresh(recorded).status == Status.SENT and fresh(recorded).esp_message_id == "esp-1"


def test_the_recorder_writes_many_answers_in_few_statements(claimed):
    recorder = Recorder(campaign_id=claimed[0].campaign_id, incident=None, seconds=0.5)
    now = timezone.now()
    for n, delivery in enumerate(claimed):
        recorder.put(change_for(delivery, Outcome("sent", message_id=f"esp-{n}"), now), delivery)
    assert recorder.close()
    assert recorder.written == len(claimed) and recorder.batches <= 2
    assert {fresh(d).status for d in claimed} == {Status.SENT}


def test_the_rate_limit_hands_out_several_tokens_in_one_call_but_never_more_than_it_holds():
    bucket = _LocalLimiter()
    assert bucket.take_some(1, 100, "default", 4) == (4, 0)  # a tenth of a second: 10 tokens
    assert bucket.take_some(1, 100, "default", 50) == (6, 0)
    taken, wait = bucket.take_some(1, 100, "default", 4)
    assert taken == 0 and 0 < wait <= 0.01
    bucket.hold("default", 1)
    assert bucket.take_some(2, 100, "default", 4)[0] == 0


def test_the_rate_limit_in_redis_hands_out_several_tokens_in_one_call(settings):
    if not settings.REDIS_URL:
        pytest.skip("Redis only")
    settings.SEND_REDIS_PREFIX = f"amends-test:{time.monotonic_ns()}"
    bucket = sending.limiter()
    assert bucket.take_some(7, 100, "default", 4) == (4, 0)
    assert bucket.take_some(7, 100, "default", 50)[0] == 6
    taken, wait = bucket.take_some(7, 100, "default", 4)
    assert taken == 0 and wait > 0


def test_a_send_job_renders_exactly_what_the_preview_renders(incident, support_sam, comms_cleo):
    from incidents.services.audience import default_segment

    segment = default_segment(incident)
    people = add_people(incident, support_sam, 8, locales=("en", "de", "de-at", "fr", "", "nl"))
    content = CONTENT | {"fr": {"subject": "Désolé", "text": "", "html": "<p>{{ first_name }}</p>"}}
    version = approved_version(segment, support_sam, comms_cleo, content=content)
    renderer = Renderer(version)
    for person in people:
        for wanted in (person.locale, "de-ch", ""):
            locale, _ = choose_locale(version.content, wanted, version.fallback_locale)
            context = render_context(
                person=person, incident=incident, verification_code="ABC", locale=locale
            )
            expected = render_version(
                version=version, person=person, locale=locale, context=context
            )
            got = renderer.render(person=person, verification_code="ABC", wanted_locale=wanted)
            # The job also says when the person's locale had no variant; the preview of a
            # chosen locale never does.
            assert replace(got, fell_back=False) == expected
            assert got.fell_back == (wanted == "nl")


@requires_postgres
def test_a_hand_over_writes_its_claim_and_no_delivery_row(claimed_only):
    # Each delivery row written once more would update every index of the table; the
    # hand-over is one small row a group (docs/performance.md, session 10).
    ids = [d.pk for d in claimed_only]

    def versions():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, xmin::text FROM campaigns_delivery WHERE id = ANY(%s)", [ids]
            )
            return dict(cursor.fetchall())

    before = versions()
    assert hand_over_many(claimed_only) == set(ids)
    assert versions() == before
    claim = SendClaim.objects.get(pk=claimed_only[0].claim_id)
    assert claim.handed_through == max(ids)


def test_a_hand_over_is_committed_by_the_time_it_returns(claimed_only):
    # The marker keeps the sweeper from queueing a row again while its ESP call runs, so
    # every other connection must see it before the call starts.
    ids = [d.pk for d in claimed_only]
    assert hand_over_many(claimed_only) == set(ids)

    seen = {}

    def sweepers_view():
        try:
            seen["handed"] = handed_over(Delivery.objects.filter(pk__in=ids)).count()
        finally:
            connections.close_all()

    other = threading.Thread(target=sweepers_view)
    other.start()
    other.join()
    assert seen["handed"] == len(ids) == 8
