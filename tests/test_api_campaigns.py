"""The sending API: launch a campaign, follow it, control it, decide on uncertain deliveries.

Setup goes through the real services (send log, freeze, version, approval). Tests
that run the send jobs commit (`transactional_audit`): the worker's threads have
database connections of their own. With REDIS_URL a real rq worker runs the jobs
(`run_jobs`); without it they run in-process, the embedded mode. Mail goes to
Django's locmem backend (`mail.outbox`).
"""

import json
import smtplib
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.cache import cache
from django.core.mail.backends import locmem
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from campaigns import services
from campaigns.models import Campaign, Delivery, Suppression
from incidents import services as incident_services
from incidents.actors import Actor
from incidents.filters import AudienceFilter
from incidents.models import AffectedPerson, AuditEntry
from incidents.services.audience import default_segment
from tests.conftest import _make

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TEMPLATE = "registry-gift-purchased"
CONTENT = {
    "en": {
        "subject": "We sent you an email by mistake",
        "text": "Dear {{ first_name|default('customer') }}, we are sorry. "
        "Your code: {{ verification_code }}",
        "html": "",
    },
    "de": {
        "subject": "Wir haben Ihnen versehentlich eine E-Mail geschickt",
        "text": "Guten Tag {{ first_name }}, Entschuldigung. Ihr Code: {{ verification_code }}",
        "html": "",
    },
}
Status = Delivery.Status


@pytest.fixture(autouse=True)
def _sending_settings(settings):
    """Fast sending, fresh throttle counters, a Redis namespace of this test's own."""
    settings.SEND_RATE_LIMIT = 1000
    settings.SEND_CONCURRENCY = 4
    settings.SEND_CONTROL_CHECK_SECONDS = 0.05
    settings.SEND_REDIS_PREFIX = f"amends-test:{time.monotonic_ns()}"
    if settings.REDIS_URL:
        import django_rq

        django_rq.get_queue("send").empty()
    cache.clear()  # throttle counters outlive a test's database
    yield
    cache.clear()


@pytest.fixture
def api():
    """An APIClient that sends `user`'s token."""

    def _api(user):
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return _api


def add_people(incident, user, rows):
    """People found the real way: send log rows through the ingest service, then a freeze."""
    by = Actor.for_user(user)
    incident_services.sendlog_ingest_rows(
        rows=[
            {
                "message_id": f"m-{address}",
                "recipient": address,
                "sent_at": T0.isoformat(),
                "template": TEMPLATE,
                "locale": locale,
                "metadata": {"first_name": name},
            }
            for address, locale, name in rows
        ],
        by=by,
    )
    incident_services.audience_freeze(
        incident=incident, filters=AudienceFilter.from_dict({"template": TEMPLATE}), by=by
    )


@pytest.fixture
def people(incident, support_sam):
    add_people(
        incident,
        support_sam,
        [
            ("Ann@Example.com", "en", "Ann"),
            ("bernd@example.de", "de", "Bernd"),
            ("carla@example.com", "en", "Carla"),
            ("dieter@example.de", "de", "Dieter"),
            ("eve@example.com", "en", "Eve"),
            ("fritz@example.de", "de-at", "Fritz"),
        ],
    )
    return list(AffectedPerson.objects.filter(incident=incident).order_by("id"))


@pytest.fixture
def segment(incident):
    return default_segment(incident)


def write_version(segment, author, *, message=None, content=CONTENT):
    return services.version_create(
        by=Actor.for_user(author),
        segment=None if message else segment,
        message=message,
        sender_name="Amends Care",
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=content,
    )


@pytest.fixture
def version(segment, people, support_sam, comms_cleo):
    """The default segment's apology, written by Support and approved by Comms."""
    version = write_version(segment, support_sam)
    services.version_approve(version=version, by=Actor.for_user(comms_cleo))
    return version


def _campaigns_url(incident):
    return f"/api/incidents/{incident.reference}/campaigns/"


def _campaign_url(campaign_id, suffix=""):
    return f"/api/campaigns/{campaign_id}/{suffix}"


def _launch(client, incident, segment, version, **fields):
    return client.post(
        _campaigns_url(incident),
        {"segment": segment.pk, "version": version.pk} | fields,
        format="json",
    )


def _assert_error(response, status, code):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return error


def _state():
    """What a refused write must leave as it was."""
    return {
        "campaigns": list(Campaign.objects.values_list("id", "status", "paused_reason")),
        "deliveries": list(Delivery.objects.values_list("id", "status", "error")),
        "audit": AuditEntry.objects.count(),
        "mail": len(mail.outbox),
    }


ALL_ZERO = {status: 0 for status in Status.values}


# --- Launching ------------------------------------------------------------------------------


def test_an_unapproved_version_cannot_be_launched_and_nothing_is_created(
    api, incident, segment, people, support_sam
):
    unapproved = write_version(segment, support_sam)
    before = _state()

    error = _assert_error(
        _launch(api(support_sam), incident, segment, unapproved), 409, "not_approved"
    )

    assert "not approved" in error["message"] and "Nothing was sent" in error["message"]
    assert _state() == before
    assert not Campaign.objects.exists() and not Delivery.objects.exists()


def test_an_edited_version_cannot_be_launched_and_nothing_is_created(
    api, incident, segment, version, support_sam
):
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
    before = _state()

    error = _assert_error(
        _launch(api(support_sam), incident, segment, version), 409, "not_approved"
    )

    assert "no longer matches what was approved" in error["message"]
    assert _state() == before and not Delivery.objects.exists()


def test_a_replaced_version_cannot_be_launched(api, incident, segment, version, support_sam):
    write_version(segment, support_sam, message=version.message, content={"en": CONTENT["en"]})

    error = _assert_error(_launch(api(support_sam), incident, segment, version), 409, "not_latest")

    assert "not the latest" in error["message"]
    assert not Campaign.objects.exists()


def test_a_launch_names_the_segment_and_its_own_version(
    api, incident, segment, version, support_sam
):
    other = incident_services.segment_save(
        incident=incident, name="Has a registry", rules=[], by=Actor.system("tests")
    )
    client = api(support_sam)
    for body, field in (
        ({"segment": 999_999, "version": version.pk}, "segment"),
        ({"segment": other.pk, "version": version.pk}, "version"),
        ({"segment": segment.pk, "version": version.pk, "rate_limit": 0}, "rate_limit"),
        ({"segment": segment.pk}, "version"),
    ):
        error = _assert_error(
            client.post(_campaigns_url(incident), body, format="json"), 400, "validation_failed"
        )
        assert list(error["fields"]) == [field]
    assert not Campaign.objects.exists()


@pytest.mark.usefixtures("transactional_audit")
def test_launching_runs_the_jobs_and_every_person_gets_exactly_one_message(
    api, incident, segment, people, version, support_sam, run_jobs
):
    client = api(support_sam)

    with run_jobs():
        response = _launch(client, incident, segment, version, batch_size=4, rate_limit=500)

    assert response.status_code == 201, response.content
    launched = response.json()
    assert response["Location"] == launched["url"]
    assert (launched["segment"]["id"], launched["version"]["id"]) == (segment.pk, version.pk)
    assert (launched["rate_limit"], launched["batch_size"], launched["mailer"]) == (
        500,
        4,
        "default",
    )
    assert launched["launched_by"] == "support_sam" and launched["send_again"] is False
    assert launched["total"] == 6

    # One message per person, each to exactly that person: one To, no Cc or Bcc.
    assert len(mail.outbox) == 6
    for message in mail.outbox:
        assert len(message.to) == 1 and message.cc == [] and message.bcc == []
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        p.original_address.strip() for p in people
    )

    campaign = client.get(launched["url"]).json()
    assert campaign["status"] == "completed"
    assert campaign["counts"] == ALL_ZERO | {"sent": 6}
    assert (campaign["progress"], campaign["eta_seconds"]) == (1.0, 0)
    assert campaign["finished_at"] is not None

    deliveries = client.get(campaign["deliveries"]).json()["results"]
    by_address = {m.to[0]: m for m in mail.outbox}
    for delivery in deliveries:
        assert delivery["status"] == "sent" and delivery["attempts"] == 1
        assert delivery["esp_message_id"] and delivery["sent_at"]
        message = by_address[delivery["address"]]
        assert message.extra_headers["X-Amends-Delivery"] == str(delivery["id"])
        assert delivery["verification_code"] in message.body
    assert [a for a in AuditEntry.objects.values_list("action", flat=True) if "campaign" in a] == [
        "campaign.launched",
        "campaign.completed",
    ]


@pytest.mark.usefixtures("transactional_audit")
def test_a_second_launch_for_the_same_people_needs_a_send_again_reason(
    api, incident, segment, version, support_sam, run_jobs
):
    client = api(support_sam)
    with run_jobs():
        first = _launch(client, incident, segment, version)
    assert first.status_code == 201, first.content
    assert len(mail.outbox) == 6
    before = _state()

    for reason in ({}, {"send_again_reason": "   "}):
        with run_jobs():
            error = _assert_error(
                _launch(client, incident, segment, version, **reason), 409, "already_contacted"
            )
        assert "already has an apology" in error["message"]
    assert _state() == before

    with run_jobs():
        again = _launch(
            client, incident, segment, version, send_again_reason="The first one had a typo"
        )

    assert again.status_code == 201, again.content
    body = again.json()
    assert (body["send_again"], body["send_again_reason"]) == (True, "The first one had a typo")
    assert len(mail.outbox) == 12
    deliveries = client.get(body["deliveries"]).json()["results"]
    assert len(deliveries) == 6 and all(d["sent_again"] for d in deliveries)
    entry = AuditEntry.objects.filter(action="campaign.launched").last()
    assert (entry.actor.username, entry.after["resend_reason"]) == (
        "support_sam",
        "The first one had a typo",
    )


def test_a_segment_with_an_unfinished_campaign_takes_no_second_one(
    api, incident, segment, version, support_sam
):
    client = api(support_sam)
    assert _launch(client, incident, segment, version).status_code == 201  # jobs not run

    error = _assert_error(
        _launch(client, incident, segment, version, send_again_reason="Again"),
        409,
        "campaign_unfinished",
    )
    assert "top-up" in error["message"]
    assert Campaign.objects.count() == 1


def test_a_segment_with_nobody_in_it_has_nobody_to_send_to(
    api, incident, people, support_sam, comms_cleo
):
    french = incident_services.segment_save(
        incident=incident,
        name="French customers",
        rules=[{"field": "locale", "op": "eq", "value": "fr"}],
        by=Actor.system("tests"),
    )
    version = write_version(french, support_sam)
    services.version_approve(version=version, by=Actor.for_user(comms_cleo))

    _assert_error(_launch(api(support_sam), incident, french, version), 409, "nobody_to_send")
    assert not Campaign.objects.exists()


# --- Control ------------------------------------------------------------------------------


def test_pause_resume_and_cancel_through_the_api(api, incident, segment, version, support_sam):
    client = api(support_sam)
    # The jobs are queued on commit, which this test never reaches: nothing is sent.
    campaign = _launch(client, incident, segment, version).json()
    assert (campaign["status"], campaign["counts"]["queued"]) == ("running", 6)

    paused = client.post(
        _campaign_url(campaign["id"], "pause/"), {"reason": "Legal asked us to wait"}, format="json"
    )
    assert paused.status_code == 200, paused.content
    assert (paused.json()["status"], paused.json()["paused_reason"]) == (
        "paused",
        "Legal asked us to wait",
    )
    assert (paused.json()["eta_seconds"], paused.json()["eta_basis"]) == (None, "")
    _assert_error(client.post(_campaign_url(campaign["id"], "pause/")), 409, "illegal_transition")

    resumed = client.post(_campaign_url(campaign["id"], "resume/"))
    assert resumed.status_code == 200, resumed.content
    assert (resumed.json()["status"], resumed.json()["paused_reason"]) == ("running", "")
    _assert_error(client.post(_campaign_url(campaign["id"], "resume/")), 409, "illegal_transition")

    cancelled = client.post(_campaign_url(campaign["id"], "cancel/"))
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["counts"] == ALL_ZERO | {"cancelled": 6}
    for action in ("pause/", "resume/", "cancel/", "top-up/"):
        _assert_error(client.post(_campaign_url(campaign["id"], action)), 409, "illegal_transition")

    assert [a for a in AuditEntry.objects.values_list("action", flat=True) if "campaign" in a] == [
        "campaign.launched",
        "campaign.paused",
        "campaign.resumed",
        "campaign.cancelled",
    ]
    assert mail.outbox == []


def test_a_paused_campaign_does_not_resume_once_its_approval_is_gone(
    api, incident, segment, version, support_sam
):
    client = api(support_sam)
    campaign = _launch(client, incident, segment, version).json()
    client.post(_campaign_url(campaign["id"], "pause/"))
    write_version(segment, support_sam, message=version.message, content={"en": CONTENT["en"]})
    before = _state()

    _assert_error(client.post(_campaign_url(campaign["id"], "resume/")), 409, "not_latest")
    _assert_error(client.post(_campaign_url(campaign["id"], "top-up/")), 409, "not_latest")
    assert _state() == before


@pytest.mark.usefixtures("transactional_audit")
def test_a_top_up_sends_only_to_people_added_since_launch(
    api, incident, segment, people, version, support_sam, run_jobs
):
    client = api(support_sam)
    with run_jobs():
        campaign = _launch(client, incident, segment, version).json()
    assert len(mail.outbox) == 6
    add_people(incident, support_sam, [("gina@example.com", "en", "Gina")])

    with run_jobs():
        response = client.post(_campaign_url(campaign["id"], "top-up/"))

    assert response.status_code == 200, response.content
    assert response.json()["added"] == 1
    assert [m.to for m in mail.outbox[6:]] == [["gina@example.com"]]
    assert client.get(campaign["url"]).json()["counts"] == ALL_ZERO | {"sent": 7}
    with run_jobs():
        nothing_new = client.post(_campaign_url(campaign["id"], "top-up/")).json()
    assert nothing_new["added"] == 0 and len(mail.outbox) == 7


# --- Following a campaign -----------------------------------------------------------------


def test_the_campaign_resource_shows_counts_progress_rate_and_eta(
    api, incident, segment, people, version, support_sam, auditor_abe
):
    Suppression.objects.create(address="eve@example.com", reason="complaint", source="manual")
    with time_machine.travel(T0, tick=False):
        launched = _launch(api(support_sam), incident, segment, version).json()
    assert launched["counts"] == ALL_ZERO | {"queued": 5, "suppressed": 1}
    assert (launched["total"], launched["progress"], launched["rate"]) == (6, 0.1667, 0.0)
    # Nothing sent yet: the estimate is at the rate limit (1,000/s here).
    assert (launched["eta_seconds"], launched["eta_basis"]) == (1, "limit")
    # Two handed to the ESP 20 s after launch, as a worker records them.
    sent = Delivery.objects.filter(status=Status.QUEUED).order_by("id")[:2]
    Delivery.objects.filter(id__in=[d.id for d in sent]).update(
        status=Status.SENT, sent_at=T0 + timedelta(seconds=20), esp_message_id="esp-1"
    )

    with time_machine.travel(T0 + timedelta(seconds=30), tick=False):
        campaign = api(auditor_abe).get(launched["url"]).json()

    assert campaign["counts"] == ALL_ZERO | {"queued": 3, "sent": 2, "suppressed": 1}
    assert campaign["total"] == 6 and campaign["progress"] == 0.5
    assert campaign["rate"] == round(2 / 30, 2)  # over the 30 s since launch
    assert (campaign["eta_seconds"], campaign["eta_basis"]) == (45, "rate")  # 3 at 2 per 30 s
    assert (campaign["status"], campaign["paused_reason"]) == ("running", "")
    assert campaign["content_hash"] == version.content_hash

    # A minute later nothing more was sent: the rate is over the last minute only.
    with time_machine.travel(T0 + timedelta(seconds=120), tick=False):
        later = api(auditor_abe).get(launched["url"]).json()
    assert (later["rate"], later["eta_basis"]) == (0.0, "limit")

    listed = api(auditor_abe).get(_campaigns_url(incident)).json()
    assert listed["count"] == 1
    [row] = listed["results"]
    assert row["id"] == launched["id"] and row["status"] == "running"
    assert row["counts"] == campaign["counts"]


def test_deliveries_page_by_cursor_and_filter_by_status_and_address(
    api, incident, segment, people, version, support_sam
):
    Suppression.objects.create(address="eve@example.com", reason="complaint", source="manual")
    client = api(support_sam)
    campaign = _launch(client, incident, segment, version).json()

    first = client.get(campaign["deliveries"], {"page_size": 4}).json()
    second = client.get(first["next"]).json()
    assert "count" not in first and second["next"] is None
    rows = first["results"] + second["results"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows) and len(rows) == 6
    assert {r["person"] for r in rows} == {p.pk for p in people}
    row = rows[0]
    assert set(row) == {
        "id",
        "campaign",
        "person",
        "address",
        "locale",
        "status",
        "attempts",
        "esp_message_id",
        "error",
        "sent_at",
        "updated_at",
        "sent_again",
        "verification_code",
    }
    assert len(row["verification_code"]) == 10

    suppressed = client.get(campaign["deliveries"], {"status": "suppressed"}).json()["results"]
    assert [r["address"] for r in suppressed] == ["eve@example.com"]
    found = client.get(campaign["deliveries"], {"search": "ANN@"}).json()["results"]
    assert [r["address"] for r in found] == ["Ann@Example.com"]
    code = rows[2]["verification_code"]
    by_code = client.get(campaign["deliveries"], {"search": code.lower()}).json()["results"]
    assert [r["id"] for r in by_code] == [rows[2]["id"]]
    error = _assert_error(
        client.get(campaign["deliveries"], {"status": "lost"}), 400, "validation_failed"
    )
    assert list(error["fields"]) == ["status"]


def test_a_page_of_deliveries_costs_the_same_queries_whatever_its_size(
    api, incident, segment, version, support_sam
):
    client = api(support_sam)
    campaign = _launch(client, incident, segment, version).json()

    def queries(page_size):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(campaign["deliveries"], {"page_size": page_size}).status_code == 200
        return len(captured)

    assert queries(1) == queries(6)


def test_a_role_that_may_not_see_people_gets_no_addresses_or_codes(
    api, incident, segment, version, support_sam
):
    campaign = _launch(api(support_sam), incident, segment, version).json()
    reader = _make("sending_dashboard", "Auditor")
    reader.groups.clear()
    board = Group.objects.create(name="Sending dashboard")
    board.permissions.set(
        Permission.objects.filter(codename__in=["view_incident", "view_campaign", "view_delivery"])
    )
    reader.groups.add(board)
    client = api(reader)

    rows = client.get(campaign["deliveries"]).json()["results"]

    assert len(rows) == 6
    assert {(r["address"], r["verification_code"]) for r in rows} == {(None, None)}
    assert all(r["status"] == "queued" for r in rows)
    error = _assert_error(
        client.get(campaign["deliveries"], {"search": "ann"}), 403, "permission_denied"
    )
    assert "incidents.view_affectedperson" in error["message"]


def test_an_unknown_campaign_or_delivery_is_a_404(api, support_sam):
    client = api(support_sam)
    _assert_error(client.get(_campaign_url(999_999)), 404, "not_found")
    _assert_error(client.get(_campaign_url(999_999, "deliveries/")), 404, "not_found")
    _assert_error(
        client.post(
            "/api/deliveries/999999/resolve/", {"decision": "resend", "reason": "x"}, format="json"
        ),
        404,
        "not_found",
    )


# --- Uncertain deliveries -----------------------------------------------------------------


class DropsOneAnswer(locmem.EmailBackend):
    """locmem, except that the connection drops while sending to an address in `lost`, once.

    The worker cannot know whether the server took that message: it becomes `uncertain`.
    """

    lost: set[str] = set()

    def send_messages(self, messages):
        for message in messages:
            if message.to[0] in self.lost:
                self.lost.discard(message.to[0])
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


@pytest.fixture
def lost_answer(settings):
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.DropsOneAnswer"}}
    DropsOneAnswer.lost = {"carla@example.com"}
    yield
    DropsOneAnswer.lost = set()


@pytest.mark.usefixtures("transactional_audit", "lost_answer")
def test_an_uncertain_delivery_is_resolved_only_with_a_reason_and_the_permission(
    api, incident, segment, version, support_sam, comms_cleo, auditor_abe, admin_ada, run_jobs
):
    with run_jobs():
        campaign = _launch(api(support_sam), incident, segment, version).json()
    assert len(mail.outbox) == 5
    [uncertain] = (
        api(auditor_abe).get(campaign["deliveries"], {"status": "uncertain"}).json()["results"]
    )
    assert uncertain["address"] == "carla@example.com"
    assert "SMTPServerDisconnected" in uncertain["error"]
    url = f"/api/deliveries/{uncertain['id']}/resolve/"
    before = _state()

    for user in (comms_cleo, auditor_abe):
        error = _assert_error(
            api(user).post(url, {"decision": "resend", "reason": "Checked"}, format="json"),
            403,
            "permission_denied",
        )
        assert "campaigns.resolve_delivery" in error["message"]
    for body, field in (
        ({"decision": "resend"}, "reason"),
        ({"decision": "resend", "reason": "   "}, "reason"),
        ({"decision": "forget", "reason": "Checked"}, "decision"),
        ({"reason": "Checked"}, "decision"),
    ):
        error = _assert_error(
            api(support_sam).post(url, body, format="json"), 400, "validation_failed"
        )
        assert list(error["fields"]) == [field]
    assert _state() == before

    with run_jobs():
        response = api(support_sam).post(
            url,
            {"decision": "resend", "reason": "The mail server has no record of it"},
            format="json",
        )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued" and response.json()["sent_again"] is False
    # Carla gets the one copy the server never took; nobody else gets a second.
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        p.original_address.strip() for p in AffectedPerson.objects.all()
    )
    resolved = Delivery.objects.get(pk=uncertain["id"])
    assert resolved.status == Status.SENT
    entry = AuditEntry.objects.get(action="delivery.uncertain_resolved")
    assert (entry.actor, entry.after["decision"], entry.after["reason"]) == (
        support_sam,
        "resend",
        "The mail server has no record of it",
    )
    assert api(admin_ada).get(campaign["url"]).json()["status"] == "completed"
    _assert_error(
        api(admin_ada).post(url, {"decision": "mark_sent", "reason": "Again"}, format="json"),
        409,
        "illegal_transition",
    )


@pytest.mark.usefixtures("transactional_audit", "lost_answer")
def test_an_uncertain_delivery_can_be_marked_sent(
    api, incident, segment, version, admin_ada, run_jobs
):
    with run_jobs():
        campaign = _launch(api(admin_ada), incident, segment, version).json()
    [uncertain] = Delivery.objects.filter(status=Status.UNCERTAIN)

    response = api(admin_ada).post(
        f"/api/deliveries/{uncertain.pk}/resolve/",
        {"decision": "mark_sent", "reason": "The ESP's log shows it went out"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "sent"
    assert response.json()["error"] == "Marked sent: The ESP's log shows it went out"
    assert len(mail.outbox) == 5  # nothing sent again
    assert api(admin_ada).get(campaign["url"]).json()["counts"] == ALL_ZERO | {"sent": 6}


# --- Roles ----------------------------------------------------------------------------------


def test_an_auditor_reads_every_sending_endpoint_but_every_write_is_403(
    api, incident, segment, version, support_sam, auditor_abe
):
    campaign = _launch(api(support_sam), incident, segment, version).json()
    delivery = Delivery.objects.first()
    client = api(auditor_abe)
    for url in (_campaigns_url(incident), campaign["url"], campaign["deliveries"]):
        assert client.get(url).status_code == 200, url
    assert client.get(campaign["deliveries"]).json()["results"][0]["verification_code"]
    before = _state()

    writes = {
        _campaigns_url(incident): {"segment": segment.pk, "version": version.pk},
        _campaign_url(campaign["id"], "pause/"): {"reason": "x"},
        _campaign_url(campaign["id"], "resume/"): {},
        _campaign_url(campaign["id"], "cancel/"): {},
        _campaign_url(campaign["id"], "top-up/"): {},
        f"/api/deliveries/{delivery.pk}/resolve/": {"decision": "mark_sent", "reason": "x"},
    }
    for url, body in writes.items():
        _assert_error(client.post(url, body, format="json"), 403, "permission_denied")
    assert _state() == before


READS = {"list", "read", "deliveries"}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("support_sam", READS | {"launch", "pause", "resume", "cancel", "top_up", "resolve"}),
        ("comms_cleo", READS),
        ("auditor_abe", READS),
        ("admin_ada", READS | {"launch", "pause", "resume", "cancel", "top_up", "resolve"}),
    ],
)
def test_each_role_can_do_exactly_what_docs_api_md_says(
    request, api, incident, segment, version, support_sam, role, allowed
):
    campaign = _launch(api(support_sam), incident, segment, version).json()
    delivery = Delivery.objects.first()
    client = api(request.getfixturevalue(role))
    calls = {
        "list": lambda: client.get(_campaigns_url(incident)),
        "read": lambda: client.get(campaign["url"]),
        "deliveries": lambda: client.get(campaign["deliveries"]),
        "launch": lambda: client.post(_campaigns_url(incident), {}, format="json"),
        "pause": lambda: client.post(_campaign_url(campaign["id"], "pause/")),
        "resume": lambda: client.post(_campaign_url(campaign["id"], "resume/")),
        "top_up": lambda: client.post(_campaign_url(campaign["id"], "top-up/")),
        "cancel": lambda: client.post(_campaign_url(campaign["id"], "cancel/")),
        "resolve": lambda: client.post(
            f"/api/deliveries/{delivery.pk}/resolve/", {}, format="json"
        ),
    }
    # Calls change what later ones see, so an allowed call may be refused by the rules
    # (400, 409); what the role decides is whether it is a 403.
    outcome = {name: call().status_code for name, call in calls.items()}
    assert {name for name, code in outcome.items() if code != 403} == allowed, outcome


def test_the_schema_validates_without_warnings_and_has_the_sending_endpoints(db, tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    schema = (tmp_path / "s.yml").read_text()
    for path in (
        "/api/incidents/{reference}/campaigns/:",
        "/api/campaigns/{id}/:",
        "/api/campaigns/{id}/pause/:",
        "/api/campaigns/{id}/resume/:",
        "/api/campaigns/{id}/cancel/:",
        "/api/campaigns/{id}/top-up/:",
        "/api/campaigns/{id}/deliveries/:",
        "/api/deliveries/{id}/resolve/:",
    ):
        assert path in schema
