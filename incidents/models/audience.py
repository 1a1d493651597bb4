import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from incidents.models.contact import (
    CONTACT_TRANSITIONS,
    ContactMethod,
    ContactStatus,
    IllegalContactTransition,
)


class AudienceQuery(models.Model):
    """Stored filters that describe the mis-sent email, and what freezing them added.

    A small freeze happens at once (status done). A large one is queued and
    runs as a background job; the row shows where it is.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Freezing"
        DONE = "done", "Frozen"
        FAILED = "failed", "Failed"

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="audience_queries"
    )
    filters = models.JSONField()
    message_count = models.PositiveBigIntegerField(default=0)
    people_count = models.PositiveBigIntegerField(default=0)
    people_added = models.PositiveBigIntegerField(default=0)
    list_hash = models.CharField("hash of the frozen list after this query", max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DONE)
    failure = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "audience queries"

    def __str__(self) -> str:
        return f"Query {self.pk} on {self.incident_id}: {self.people_count} people"


class Segment(models.Model):
    """A named, rule-defined part of the affected list. Each person is in exactly one.

    Rules are a list of conditions that must all hold; segments are tried in
    `position` order and the first match wins. The default segment catches the rest.
    """

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="segments"
    )
    name = models.CharField(max_length=100)
    rules = models.JSONField(default=list, blank=True)
    position = models.PositiveIntegerField(default=0)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["is_default", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "name"], name="segment_name_unique"),
            models.UniqueConstraint(
                fields=["incident"],
                condition=models.Q(is_default=True),
                name="segment_one_default_per_incident",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AffectedPerson(models.Model):
    """One distinct person (a normalised address) in an incident's frozen list."""

    class Source(models.TextChoices):
        QUERY = "query", "Audience query"
        CSV = "csv", "Added from a file"
        MANUAL = "manual", "Added by hand"

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="affected"
    )
    address = models.CharField("normalised address", max_length=320)
    original_address = models.CharField("address as received", max_length=320)
    customer_id = models.CharField(max_length=100, blank=True)
    locale = models.CharField(max_length=16, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    latest_status = models.CharField(max_length=20, blank=True)
    # The ESP message ids of every mis-sent message that reached this person.
    # Copied at freeze time, so the list never changes when the send log does.
    message_ids = models.JSONField(default=list)
    message_count = models.PositiveIntegerField(default=0)
    first_sent_at = models.DateTimeField(null=True, blank=True)
    segment = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="people")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.QUERY)
    # No database constraint: a freeze writes a million people at once, and a
    # per-row check at commit costs seconds. Queries are never deleted (they are
    # evidence, referenced from the audit trail), so the reference cannot dangle.
    added_by_query = models.ForeignKey(
        AudienceQuery,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    added_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_reason = models.TextField(blank=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Has this person been reached? Current state here (db_default: the freeze
    # inserts people with raw SQL that names only the list's own columns);
    # counted by the dashboard and the completion gate; history in ContactRecord.
    contact_status = models.CharField(
        max_length=12, choices=ContactStatus.choices, db_default=ContactStatus.PENDING
    )
    contact_method = models.CharField(
        max_length=12, choices=ContactMethod.choices, blank=True, db_default=""
    )
    contacted_at = models.DateTimeField(null=True, blank=True)
    contact_note = models.TextField(
        "contact note, or the reason for a waiver", blank=True, db_default=""
    )
    contact_updated_at = models.DateTimeField(null=True, blank=True)
    # Who in support is following up an unreachable person.
    followup_assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    ContactStatus = ContactStatus

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "affected people"
        constraints = [
            models.UniqueConstraint(fields=["incident", "address"], name="affected_person_once"),
            models.CheckConstraint(
                condition=models.Q(removed_at__isnull=True) | ~models.Q(removed_reason=""),
                name="affected_removal_needs_reason",
                violation_error_message="Say why this person is removed from the list.",
            ),
        ]
        indexes = [
            models.Index(fields=["incident", "segment"], name="affected_incident_segment"),
            models.Index(fields=["incident", "contact_status"], name="affected_contact_status"),
        ]
        permissions = [
            ("record_contact", "Can record how an affected person was reached and follow up"),
            ("waive_contact", "Can waive contacting an affected person, with a reason"),
        ]

    def __str__(self) -> str:
        return f"person {self.pk} of incident {self.incident_id}"

    # --- Contact state machine --------------------------------------------------
    def set_contact_status(
        self,
        status: str,
        *,
        method: str = "",
        note: str = "",
        contacted_at=None,
        now=None,
    ) -> str:
        """Move to `status` or raise IllegalContactTransition. Saves; returns the previous status.

        The caller (a service) holds the row locked and writes the ContactRecord
        and the audit entry in the same transaction.
        """
        if status not in ContactStatus.values:
            raise IllegalContactTransition(f"“{status}” is not a contact status.")
        if status not in CONTACT_TRANSITIONS[self.contact_status]:
            raise IllegalContactTransition(
                f"A person who is {ContactStatus(self.contact_status).label.lower()} cannot "
                f"become {ContactStatus(status).label.lower()}.",
                code="illegal_contact_transition",
            )
        if status == ContactStatus.WAIVED and not note.strip():
            raise IllegalContactTransition(
                "Say why this person does not need to be contacted.", code="reason_required"
            )
        now = now or timezone.now()
        previous, self.contact_status = self.contact_status, status
        self.contact_note = note
        self.contact_updated_at = now
        if status == ContactStatus.CONTACTED:
            self.contact_method = method
            self.contacted_at = contacted_at or now
        elif status == ContactStatus.WAIVED:
            self.contact_method = ""
        fields = ["contact_status", "contact_method", "contacted_at", "contact_note"]
        self.save(update_fields=[*fields, "contact_updated_at"])
        return previous


def list_digest(addresses) -> str:
    """SHA-256 over the sorted normalised addresses, one per line: the frozen list's fingerprint."""
    digest = hashlib.sha256()
    for address in addresses:
        digest.update(address.encode())
        digest.update(b"\n")
    return digest.hexdigest()
