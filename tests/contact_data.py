"""Test data for contact tracking: people frozen the real way, deliveries made directly.

Deliveries are rows with a state; the sending and tracking code that moves them is
tested in its own files, so here they are written as they would stand afterwards.
"""

from datetime import timedelta

from django.utils import timezone

from campaigns.models import Campaign, Delivery, Message, MessageVersion
from tests.factories import freeze_people


def people(incident, user, n: int, *, locale: str = "en") -> list:
    """n affected people of the incident, frozen from the send log, in id order."""
    rows = [(f"m{i}", f"person{i}@example.com", locale, {}) for i in range(n)]
    by_address = freeze_people(incident, user, rows)
    return sorted(by_address.values(), key=lambda p: p.pk)


def campaign(incident, segment, author) -> Campaign:
    message = Message.objects.create(
        incident=incident, segment=segment, sender_address="care@retailer.example", version_count=1
    )
    version = MessageVersion(
        message=message,
        number=1,
        author=author,
        sender_address="care@retailer.example",
        fallback_locale="en",
        content={"en": {"subject": "We are sorry", "text": "Sorry.", "html": ""}},
    )
    version.content_hash = version.compute_hash()
    version.save()
    return Campaign.objects.create(
        incident=incident,
        segment=segment,
        version=version,
        content_hash=version.content_hash,
        status=Campaign.Status.RUNNING,
        launched_at=timezone.now() - timedelta(hours=3),
    )


def delivery(camp: Campaign, person, status: str, *, sent_minutes_ago: int = 0, **fields):
    sent_at = timezone.now() - timedelta(minutes=sent_minutes_ago)
    accepted = status not in ("queued", "sending", "failed", "suppressed", "cancelled")
    values = {
        "address": person.address,
        "locale": person.locale,
        "sent_at": sent_at if accepted else None,
        "esp_message_id": f"esp-{person.pk}" if accepted else "",
    }
    return Delivery.objects.create(
        campaign=camp,
        incident_id=camp.incident_id,
        person=person,
        status=status,
        **(values | fields),
    )
