"""The one door for ESP tracking events: anymail parses each ESP's webhook, we record.

Every event updates the send log (adding messages it has not seen, so Amends
can be an extra webhook receiver for all of the company's mail). Hard bounces,
complaints and unsubscribes also feed the suppression list.
"""

import logging

from anymail.signals import AnymailTrackingEvent, EventType
from django.db import transaction
from django.utils import timezone

from campaigns import services as campaign_services
from campaigns.models import Suppression
from incidents.actors import Actor

log = logging.getLogger(__name__)

# anymail's normalised event type → the send log's "latest status".
STATUS_FOR_EVENT = {
    EventType.SENT: "sent",
    EventType.DELIVERED: "delivered",
    EventType.DEFERRED: "deferred",
    EventType.BOUNCED: "bounced",
    EventType.REJECTED: "rejected",
    EventType.FAILED: "failed",
    EventType.COMPLAINED: "complained",
    EventType.OPENED: "opened",
    EventType.CLICKED: "clicked",
    EventType.UNSUBSCRIBED: "unsubscribed",
}

# Bounce types that mean "this mailbox will never accept mail", per ESP raw payload.
_SOFT_BOUNCE_TYPES = {"SoftBounce", "Transient", "DnsError", "AutoResponder", "Blocked"}


def is_hard_bounce(event: AnymailTrackingEvent, esp_name: str) -> bool:
    if event.event_type != EventType.BOUNCED:
        return False
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    if esp_name.lower() == "postmark":
        return raw.get("Type") not in _SOFT_BOUNCE_TYPES
    return event.reject_reason in (None, "bounced", "invalid")


def _suppression_reason(event: AnymailTrackingEvent, esp_name: str) -> str | None:
    if is_hard_bounce(event, esp_name):
        return Suppression.Reason.HARD_BOUNCE
    if event.event_type == EventType.COMPLAINED:
        return Suppression.Reason.COMPLAINT
    if event.event_type == EventType.UNSUBSCRIBED:
        return Suppression.Reason.UNSUBSCRIBED
    return None


def tracking_event_apply(*, event: AnymailTrackingEvent, esp_name: str) -> str:
    """Record one tracking event. Returns what happened, for logs and tests."""
    from incidents.services import sendlog_record_event
    from incidents.services.sendlog import RowError

    status = STATUS_FOR_EVENT.get(event.event_type)
    if status is None or not event.message_id or not event.recipient:
        return "ignored"
    with transaction.atomic():
        try:
            outcome = sendlog_record_event(
                # anymail wraps some ESPs' ids in <…> (Mailgun); exports usually do not.
                message_id=event.message_id.strip().strip("<>"),
                recipient=event.recipient,
                status=status,
                timestamp=event.timestamp or timezone.now(),
                tags=event.tags or [],
                metadata=event.metadata or {},
                esp=esp_name,
            )
        except RowError as exc:
            log.warning("Unusable %s tracking event %s: %s", esp_name, event.event_id, exc)
            return "rejected"
        reason = _suppression_reason(event, esp_name)
        if reason:
            campaign_services.suppression_add(
                address=event.recipient,
                reason=reason,
                source=Suppression.Source.WEBHOOK,
                note=f"{esp_name} {event.event_type}: {(event.description or '')[:200]}",
                by=Actor.system(f"webhook:{esp_name.lower()}"),
            )
    return outcome


def on_tracking(sender, event, esp_name, **kwargs):
    """anymail's tracking signal receiver: only hands over to tracking_event_apply."""
    tracking_event_apply(event=event, esp_name=esp_name)
