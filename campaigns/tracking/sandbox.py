"""The embedded mode's ESP: what the sandbox "sent" gets delivered, bounced or deferred.

The sandbox backend (campaigns/mail.py) hands each campaign message here; the
events go through the same ingest and apply code as a real ESP's webhooks
(esp "Sandbox"), so the demo shows what production would: delivered people
contacted, bounced people unreachable and suppressed.

What happens to a message is decided by its address, the same on every run:

| Address | Events |
|---|---|
| local part starts with `bounce` | hard bounce |
| starts with `soft` | soft bounce (retried per SOFT_BOUNCE_RETRIES) |
| starts with `defer` | deferred, and nothing more yet |
| starts with `complain` | delivered, then a spam complaint |
| otherwise, by SHA-256 of the address mod 100 | 0–3: hard bounce; 4–7: deferred, then delivered a minute later; 8–9: deferred; the rest delivered (and a third of those opened) |
"""

import hashlib
from datetime import datetime, timedelta

from anymail.signals import AnymailTrackingEvent, EventType

ESP_NAME = "Sandbox"


def plan(address: str) -> list[tuple[str, int, str]]:
    """(event type, seconds after sending, bounce kind) for a message to `address`."""
    local = address.split("@", 1)[0].lower()
    if local.startswith("bounce"):
        return [(EventType.BOUNCED, 2, "hard")]
    if local.startswith("soft"):
        return [(EventType.BOUNCED, 2, "soft")]
    if local.startswith("defer"):
        return [(EventType.DEFERRED, 2, "")]
    if local.startswith("complain"):
        return [(EventType.DELIVERED, 1, ""), (EventType.COMPLAINED, 30, "")]
    bucket = int(hashlib.sha256(address.lower().encode()).hexdigest(), 16) % 100
    if bucket < 4:
        return [(EventType.BOUNCED, 2, "hard")]
    if bucket < 8:
        return [(EventType.DEFERRED, 2, ""), (EventType.DELIVERED, 60, "")]
    if bucket < 10:
        return [(EventType.DEFERRED, 2, "")]
    events = [(EventType.DELIVERED, 1, "")]
    if bucket % 3 == 0:
        events.append((EventType.OPENED, 300, ""))
    return events


_DESCRIPTIONS = {
    "hard": "550 5.1.1 The email account that you tried to reach does not exist (sandbox)",
    "soft": "452 4.2.2 The email account that you tried to reach is over quota (sandbox)",
}


def simulate(
    *, message_id: str, address: str, metadata: dict, tags: list[str], sent_at: datetime
) -> list[AnymailTrackingEvent]:
    """The ESP events the sandbox reports for one message it kept."""
    events = []
    for event_type, after, kind in plan(address):
        events.append(
            AnymailTrackingEvent(
                event_type=event_type,
                timestamp=sent_at + timedelta(seconds=after),
                message_id=message_id,
                event_id=None,
                recipient=address,
                reject_reason="bounced" if kind else None,
                description=_DESCRIPTIONS.get(kind, ""),
                mta_response="250 2.0.0 OK (sandbox)" if event_type == EventType.DELIVERED else "",
                tags=tags,
                metadata=metadata,
                esp_event={
                    "sandbox": True,
                    "event": str(event_type),
                    "bounce": kind,
                    "recipient": address,
                    "message_id": message_id,
                },
            )
        )
    return events
