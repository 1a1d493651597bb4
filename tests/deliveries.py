"""Campaigns and deliveries made directly, for tests of pages that only read them
(the verification page, the metrics). Sending itself is tested through its services."""

from campaigns.models import Campaign, Delivery, Message, MessageVersion
from campaigns.models.sending import new_verification_code
from incidents.models import AffectedPerson
from incidents.services.audience import default_segment
from tests.factories import T0

Status = Delivery.Status


def make_campaign(incident, *, launched_at=T0) -> Campaign:
    """A running campaign of an (unapproved) version 1 for the incident's default segment."""
    segment = default_segment(incident)
    message = Message.objects.create(
        incident=incident,
        segment=segment,
        sender_address="care@retailer.example",
        version_count=1,
    )
    version = MessageVersion(
        message=message,
        number=1,
        author=incident.owner,
        sender_address="care@retailer.example",
        fallback_locale="en",
        content={"en": {"subject": "Sorry", "text": "{{ verification_code }}", "html": ""}},
    )
    version.content_hash = version.compute_hash()
    version.save()
    return Campaign.objects.create(
        incident=incident,
        segment=segment,
        version=version,
        content_hash=version.content_hash,
        status=Campaign.Status.RUNNING,
        launched_at=launched_at,
    )


def deliver(campaign, *, status, code=None, sent_at=T0, name="ann") -> Delivery:
    """One person and their delivery in `status` (sent_at only where the status has one)."""
    person = AffectedPerson.objects.create(
        incident=campaign.incident,
        address=f"{name}@example.com",
        original_address=f"{name.title()}@Example.com",
        segment=campaign.segment,
        customer_id=f"C-{name}-4711",
        metadata={"first_name": name.title()},
    )
    return Delivery.objects.create(
        campaign=campaign,
        incident=campaign.incident,
        person=person,
        address=person.original_address,
        status=status,
        sent_at=sent_at if status not in (Status.QUEUED, Status.UNCERTAIN) else None,
        verification_code=code or new_verification_code(),
    )
