"""Test data made the real way: send-log rows, then a freeze through the service."""

from datetime import UTC, datetime

from incidents import services
from incidents.actors import Actor
from incidents.addresses import normalise
from incidents.filters import AudienceFilter
from incidents.models import AffectedPerson, SendLogEntry

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TEMPLATE = "registry-gift-purchased"


def freeze_people(incident, user, rows, *, template: str = TEMPLATE) -> dict[str, AffectedPerson]:
    """Log `rows` (message_id, address, locale, metadata) as sent at T0, freeze the template.

    Returns the incident's affected people by normalised address.
    """
    for message_id, address, locale, metadata in rows:
        SendLogEntry.objects.create(
            message_id=message_id,
            recipient=address,
            address=normalise(address),
            template=template,
            sent_at=T0,
            locale=locale,
            metadata=metadata,
        )
    services.audience_freeze(
        incident=incident,
        filters=AudienceFilter.from_dict({"template": template}),
        by=Actor.for_user(user),
    )
    return {p.address: p for p in AffectedPerson.objects.filter(incident=incident)}
