"""ESP tracking events: what each ESP told us about each message, raw and normalised.

The webhook request only stores events (one INSERT per batch, duplicates
ignored on `event_key`); a job applies them to deliveries, the send log,
contact statuses and suppressions, and stamps `applied_at`. An ESP that
resends a batch after a failure therefore changes nothing twice: stored
events are skipped by the key, applied events by `applied_at`.
"""

from django.db import models
from django.utils import timezone


class EventOutcome(models.TextChoices):
    PENDING = "pending", "Not applied yet"
    APPLIED = "applied", "Applied"
    # Older than what the delivery already shows (a late "deferred" after
    # "delivered"), or a flag that was already set: kept, changes nothing.
    NO_CHANGE = "no_change", "Changed nothing"
    # No delivery of ours has this message id or delivery id: kept for the send log.
    UNMATCHED = "unmatched", "No matching delivery"
    IGNORED = "ignored", "Not tracked"


class DeliveryEvent(models.Model):
    """One tracking event from an ESP webhook (or the sandbox's simulation of one). Append-only."""

    Outcome = EventOutcome

    esp = models.CharField(max_length=40)
    # The ESP's event id; a hash of (esp, message id, type, time, recipient) where it has none.
    event_key = models.CharField(max_length=200, unique=True)
    event_type = models.CharField(max_length=20)  # anymail's normalised EventType
    message_id = models.CharField(max_length=255, blank=True)
    recipient = models.CharField(max_length=320, blank=True)
    occurred_at = models.DateTimeField("when the ESP says it happened", null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=10, choices=EventOutcome.choices, default=EventOutcome.PENDING
    )
    # Mapped by the delivery id in the metadata/headers, else by ESP message id.
    # No database constraints: ingest must never fail on a reference.
    delivery = models.ForeignKey(
        "campaigns.Delivery",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="events",
    )
    incident = models.ForeignKey(
        "incidents.Incident",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    bounce_kind = models.CharField(max_length=4, blank=True)  # "hard" / "soft" for bounces
    description = models.TextField(blank=True)
    mta_response = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    raw = models.JSONField("the ESP's event as received", default=dict)

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [
            # The apply job's queue: only the few rows not yet applied.
            models.Index(
                fields=["received_at"],
                condition=models.Q(applied_at__isnull=True),
                name="event_not_applied",
            ),
            models.Index(fields=["delivery", "occurred_at"], name="event_delivery"),
            models.Index(fields=["message_id"], name="event_message_id"),
            models.Index(fields=["incident", "received_at"], name="event_incident"),
        ]

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type} for {self.message_id or '?'}"
