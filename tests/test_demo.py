"""The demo scenario: the first screens tell the whole story, built through the real services."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Count
from django.urls import reverse

from campaigns import selectors
from campaigns.models import (
    Approval,
    Campaign,
    Delivery,
    DeliveryEvent,
    Message,
    MessageVersion,
    OutboxMessage,
    Suppression,
)
from campaigns.rendering import render_version
from incidents import audit, demo
from incidents.actors import Actor
from incidents.models import (
    AffectedPerson,
    AudienceQuery,
    AuditEntry,
    ContactRecord,
    Incident,
    Segment,
    SendLogEntry,
    TimelineEntry,
)

SANDBOX = {
    "default": {"BACKEND": "campaigns.mail.SandboxBackend", "OPTIONS": {"simulate_events": True}}
}


@pytest.fixture
def seeded(db, settings):
    settings.REDIS_URL = ""  # approval emails would run in this process after a commit
    settings.MAILERS = SANDBOX  # as in the embedded mode (the test runner swaps in locmem)
    call_command("seed_demo", verbosity=0)
    return Incident.objects.get(title=demo.DEMO_TITLE)


def _counts() -> dict:
    return {
        "incidents": Incident.objects.count(),
        "users": get_user_model().objects.count(),
        "sendlog": SendLogEntry.objects.count(),
        "queries": AudienceQuery.objects.count(),
        "people": AffectedPerson.objects.count(),
        "segments": Segment.objects.count(),
        "suppressions": Suppression.objects.count(),
        "messages": Message.objects.count(),
        "versions": MessageVersion.objects.count(),
        "approvals": Approval.objects.count(),
        "timeline": TimelineEntry.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def test_seeding_twice_creates_everything_once(seeded):
    first = _counts()
    call_command("seed_demo", verbosity=0)
    assert _counts() == first
    assert first | {"audit": 0, "timeline": 0} == {
        "incidents": 1,
        "users": 4,
        "sendlog": 358,
        "queries": 1,
        "people": 280,
        "segments": 2,
        "suppressions": 2,
        "messages": 2,
        "versions": 3,
        "approvals": 3,  # a rejection, then two approvals (SEV1)
        "timeline": 0,
        "audit": 0,
    }


def test_a_database_seeded_by_the_older_demo_is_completed(db):
    # The earlier demo made only the users and the incident.
    users = demo._users(Actor.system("demo"))
    demo._open_incident(Actor.for_user(users["support_sam"]))

    call_command("seed_demo", verbosity=0)

    assert Incident.objects.count() == 1
    assert AffectedPerson.objects.count() == 280 and Message.objects.count() == 2


def test_the_send_log_and_audience_tell_the_registry_story(seeded):
    registry = SendLogEntry.objects.filter(template=demo.REGISTRY_TEMPLATE)
    in_window = registry.filter(sent_at__gte=seeded.sent_from, sent_at__lt=seeded.sent_until)
    assert (registry.count(), in_window.count()) == (308, 300)
    assert set(SendLogEntry.objects.values_list("template", flat=True)) == {
        "registry-gift-purchased",
        "order-shipped",
        "weekly-newsletter",
    }
    assert set(SendLogEntry.objects.values_list("source", flat=True)) == {"api"}
    # The retry reached 20 people a second time, their address in another case: one person each.
    twice = AffectedPerson.objects.filter(incident=seeded, message_count=2)
    assert twice.count() == 20
    recipients = SendLogEntry.objects.filter(message_id__in=twice.first().message_ids)
    spellings = set(recipients.values_list("recipient", flat=True))
    assert len(spellings) == 2 and len({r.lower() for r in spellings}) == 1
    assert set(AffectedPerson.objects.values_list("locale", flat=True)) == {"en", "de"}

    [query] = seeded.audience_queries.all()
    assert (query.message_count, query.people_count) == (300, 280)
    assert query.filters["template"] == demo.REGISTRY_TEMPLATE and query.filters["sent_from"]
    segments = {s.name: s.people.count() for s in seeded.segments.all()}
    assert segments == {"Has a registry": 40, "Everyone else": 240}
    assert all(
        p.metadata["has_registry"]
        for p in AffectedPerson.objects.filter(segment__name="Has a registry")
    )
    suppressed = AffectedPerson.objects.filter(
        address__in=Suppression.objects.values("address")
    ).count()
    assert suppressed == 2
    assert seeded.status == Incident.Status.CONTACTING  # the apology is on its way


def test_the_apology_was_rejected_once_then_approved_by_two_and_the_correction_awaits(
    seeded, settings
):
    # The apology prints VERIFICATION_URL, plain http on a development machine.
    settings.VERIFICATION_URL = "https://retailer.example/verify/"
    everyone = Message.objects.get(segment__is_default=True)
    first, final = everyone.versions.order_by("number")
    assert (first.author.username, final.author.username) == ("support_sam", "support_sam")
    rejection = first.approvals.get()
    assert (rejection.approver.username, rejection.decision) == ("comms_cleo", "rejected")
    assert "discount" in rejection.comment
    assert "SORRY15" in first.content["en"]["text"]
    assert "SORRY15" not in final.content["en"]["text"] + final.content["de"]["text"]

    state = selectors.version_approval_state(final)
    assert (state.approved, state.have, state.needed) == (True, 2, 2)
    assert [d.approver for d in state.decisions] == ["comms_cleo", "admin_ada"]
    assert all(a.content_hash == final.content_hash for a in final.approvals.all())
    # Art. 34 items, https links, a plain text for each locale: nothing to warn about.
    assert selectors.version_warnings(version=final) == []

    registry = Message.objects.get(segment__name="Has a registry").versions.get()
    state = selectors.version_approval_state(registry)
    assert (state.approved, state.rejected, state.have) == (False, False, 0)
    assert AuditEntry.objects.filter(
        action="message.approval_requested", object_id=str(registry.pk)
    ).exists()


def test_the_demo_preview_renders_english_and_german_for_affected_people(seeded):
    final = Message.objects.get(segment__is_default=True).versions.order_by("-number").first()
    people = AffectedPerson.objects.filter(segment__is_default=True).order_by("id")
    english, german = people.filter(locale="en").first(), people.filter(locale="de").first()

    en = render_version(version=final, person=english)
    de = render_version(version=final, person=german)

    assert (en.locale, de.locale) == ("en", "de")
    assert en.subject == demo.EVERYONE_EN_SUBJECT
    assert en.text.startswith(f"Dear {english.metadata['first_name']},")
    assert de.text.startswith(f"Guten Tag {german.metadata['first_name']},")
    assert seeded.reference in en.text and seeded.reference in de.text
    assert "{{" not in en.text + de.text + en.html + de.html
    assert "<h3>Was ist passiert?</h3>" in de.html
    assert 'href="mailto:care@retailer.example"' in en.html
    assert en.from_email == "Customer Care <care@retailer.example>"


def test_the_demo_audit_chain_verifies(seeded):
    report = audit.verify_chain()
    assert report.ok, report.broken
    assert report.checked == AuditEntry.objects.count()
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {
        "sendlog.ingested",
        "audience.frozen",
        "segment.saved",
        "suppression.added",
        "message.version_created",
        "message.approval_requested",
        "message.version_rejected",
        "message.version_approved",
    } <= actions


# --- The demo sends (issue 5, item 8; issue 6) -----------------------------------------------


def test_the_demo_sends_in_embedded_mode(transactional_audit, settings, client):
    """Seeding commits, then the embedded mode sends through the sandbox and its ESP reports."""
    settings.REDIS_URL = ""
    settings.MAILERS = SANDBOX
    call_command("seed_demo", verbosity=0)

    incident = Incident.objects.get(title=demo.DEMO_TITLE)
    campaign = Campaign.objects.get(incident=incident)
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.segment.is_default and campaign.deliveries.count() == 240
    statuses = dict(campaign.deliveries.values_list("status").annotate(n=Count("id")).order_by())
    assert statuses[Delivery.Status.SUPPRESSED] == 2  # the two suppressed before
    assert statuses[Delivery.Status.DELIVERED] > 200
    assert statuses.get(Delivery.Status.BOUNCED, 0) > 0
    assert statuses.get(Delivery.Status.DEFERRED, 0) > 0
    # Every message handed over is in the outbox, once (beside the approval requests).
    handed = campaign.deliveries.exclude(status=Delivery.Status.SUPPRESSED)
    apologies = OutboxMessage.objects.filter(headers__has_key="X-Amends-Delivery")
    assert apologies.count() == handed.count()
    # (an id recorded from an ESP event comes without the angle brackets)
    assert {m.strip("<>") for m in apologies.values_list("message_id", flat=True)} == {
        m.strip("<>") for m in handed.values_list("esp_message_id", flat=True)
    }
    # The sandbox's events went through the tracking path and were all applied.
    assert DeliveryEvent.objects.filter(esp="Sandbox").exists()
    assert not DeliveryEvent.objects.filter(applied_at__isnull=True).exists()
    people = dict(
        AffectedPerson.objects.filter(segment=campaign.segment)
        .values_list("contact_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    assert people["contacted"] == statuses[Delivery.Status.DELIVERED]
    assert people["unreachable"] == statuses[Delivery.Status.BOUNCED]
    bounced = campaign.deliveries.filter(status=Delivery.Status.BOUNCED)
    assert (
        Suppression.objects.filter(
            address__in=bounced.values("person__address"), reason="hard_bounce"
        ).count()
        == bounced.count()
    )
    assert ContactRecord.objects.filter(delivery__isnull=False).count() >= people["contacted"]
    assert audit.verify_chain().ok

    # The outbox shows them to the Admin.
    client.force_login(get_user_model().objects.get(username="admin_ada"))
    page = client.get(reverse("campaigns:outbox"))
    assert page.status_code == 200

    call_command("seed_demo", verbosity=0)  # again: nothing is sent twice
    assert Campaign.objects.count() == 1 and apologies.count() == handed.count()
