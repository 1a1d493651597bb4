"""An anymail tracking event as a DeliveryEvent row: keyed, classified, JSON-safe.

Nothing here touches the database: the webhook request only builds rows and
stores them in one INSERT (ingest.py); what they mean is decided later (apply.py).
"""

import hashlib
import json
from datetime import UTC, datetime

from anymail.signals import AnymailTrackingEvent, EventType
from django.utils import timezone

from campaigns.models import DeliveryEvent

# ESPs whose event id names one event for one recipient and stays the same when the ESP
# sends it again. Others get a key computed from the event's content: Mailgun's id is
# the request's signing token (new on every retry), Amazon SES's is the SNS
# notification's (shared by every recipient of one bounce notice), many have none.
TRUSTED_EVENT_IDS = {"postmark", "sendgrid", "sparkpost"}

# Bounce types that mean "try again later", by the ESP's own words.
_SOFT_POSTMARK = {"SoftBounce", "Transient", "DnsError", "AutoResponder", "Blocked"}
_SOFT_REASONS = {"blocked", "timed_out", "other", "spam"}


def slug(esp_name: str) -> str:
    return esp_name.strip().lower().replace(" ", "_")


def clean_message_id(message_id) -> str:
    # anymail wraps some ESPs' ids in <…> (Mailgun, SMTP Message-IDs); exports usually do not.
    return str(message_id or "").strip().strip("<>")[:255]


def bounce_kind(event: AnymailTrackingEvent, esp_name: str) -> str:
    """ "hard", "soft", or "" for an event that is not a bounce."""
    if event.event_type != EventType.BOUNCED:
        return ""
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    esp = slug(esp_name)
    if esp == "postmark":
        return "soft" if raw.get("Type") in _SOFT_POSTMARK else "hard"
    if esp == "amazon_ses":
        # "Permanent: General", "Transient: MailboxFull", "Undetermined: Undetermined"
        return "hard" if (event.description or "").startswith("Permanent") else "soft"
    if esp == "sendgrid":
        return "soft" if str(raw.get("type", "")).lower() == "blocked" else "hard"
    if esp == "sparkpost":
        # Bounce classes 10 (invalid recipient), 30 (no RCPT) and 90 are permanent.
        body = next(iter(raw.get("msys", {}).values()), {})
        return "hard" if str(body.get("bounce_class")) in {"10", "30", "90"} else "soft"
    if esp == "sandbox":
        return raw.get("bounce", "hard")
    return "soft" if event.reject_reason in _SOFT_REASONS else "hard"


def _json_safe(value) -> dict:
    if isinstance(value, dict):
        try:
            json.dumps(value)
            return value
        except (TypeError, ValueError):
            return json.loads(json.dumps(value, default=str))
    if value is None:
        return {}
    return {"value": json.loads(json.dumps(value, default=str))}


def event_key(event: AnymailTrackingEvent, esp_name: str, message_id: str, when: str) -> str:
    """The dedupe key: the ESP's event id where it can be trusted, else a content hash."""
    esp = slug(esp_name)
    if esp in TRUSTED_EVENT_IDS and event.event_id:
        key = f"{esp}:{event.event_id}"
        if len(key) <= 200:
            return key
    digest = hashlib.sha256(
        "\x1f".join(
            (
                esp,
                message_id,
                str(event.event_type),
                when,
                (event.recipient or "").strip().lower(),
                str(event.description or ""),
                str(event.mta_response or ""),
                # Mailgun's own event id, unique within a day (its request token is not stable).
                str(event.esp_event.get("event-data", {}).get("id", ""))
                if esp == "mailgun" and isinstance(event.esp_event, dict)
                else "",
            )
        ).encode()
    ).hexdigest()
    return f"{esp}:sha256:{digest}"


def to_row(event: AnymailTrackingEvent, esp_name: str, *, received_at: datetime) -> DeliveryEvent:
    """One DeliveryEvent, not saved. Events without a time take the time they arrived."""
    message_id = clean_message_id(event.message_id)
    occurred_at = event.timestamp or received_at
    if timezone.is_naive(occurred_at):
        occurred_at = timezone.make_aware(occurred_at, UTC)
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    return DeliveryEvent(
        esp=esp_name[:40],
        event_key=event_key(event, esp_name, message_id, occurred_at.isoformat()),
        event_type=str(event.event_type or EventType.UNKNOWN)[:20],
        message_id=message_id,
        recipient=(event.recipient or "").strip()[:320],
        occurred_at=occurred_at,
        received_at=received_at,
        bounce_kind=bounce_kind(event, esp_name),
        description=str(event.description or ""),
        mta_response=str(event.mta_response or ""),
        metadata=_json_safe(metadata),
        tags=[str(tag) for tag in (event.tags or [])],
        raw=_json_safe(event.esp_event),
    )
