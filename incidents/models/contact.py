"""Whether each affected person has been reached: the question the incident is about.

A person's contact status lives on AffectedPerson (contact_status and friends,
kept current for fast counts); every change to it is also kept here as an
append-only ContactRecord, so the ledger can show how and when each person
was reached, by whom, or why they were waived.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class ContactStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CONTACTED = "contacted", "Contacted"
    UNREACHABLE = "unreachable", "Unreachable"
    WAIVED = "waived", "Waived"


class ContactMethod(models.TextChoices):
    EMAIL = "email", "Email (delivered)"
    PHONE = "phone", "Phone"
    LETTER = "letter", "Letter"
    TICKET = "ticket", "Support ticket"
    IN_PERSON = "in_person", "In person"


# Every move a person's contact status can make. "Contacted" can fall back to
# "unreachable" only when the email that contacted them later bounced (the
# services check the method); a waiver can be followed by a real contact.
CONTACT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    ContactStatus.PENDING: (
        ContactStatus.CONTACTED,
        ContactStatus.UNREACHABLE,
        ContactStatus.WAIVED,
    ),
    ContactStatus.UNREACHABLE: (ContactStatus.CONTACTED, ContactStatus.WAIVED),
    ContactStatus.CONTACTED: (ContactStatus.UNREACHABLE,),
    ContactStatus.WAIVED: (ContactStatus.CONTACTED,),
}
# What the completion gate accepts.
DONE = (ContactStatus.CONTACTED, ContactStatus.WAIVED)


class IllegalContactTransition(ValidationError):
    """A person's contact status was asked to make a move it cannot make."""


class ContactRecord(models.Model):
    """One change to a person's contact status, with who, how, when and why. Append-only."""

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="contact_records"
    )
    person = models.ForeignKey(
        "incidents.AffectedPerson", on_delete=models.PROTECT, related_name="contact_records"
    )
    status = models.CharField("new status", max_length=12, choices=ContactStatus.choices)
    previous_status = models.CharField(max_length=12, choices=ContactStatus.choices)
    method = models.CharField(max_length=12, choices=ContactMethod.choices, blank=True)
    note = models.TextField("note, or the reason for a waiver", blank=True)
    # When the contact happened (a phone call yesterday), not when it was typed in.
    contacted_at = models.DateTimeField(null=True, blank=True)
    # Set when an ESP event made the change (a delivered or bounced email).
    delivery = models.ForeignKey(
        "campaigns.Delivery",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    recorded_by_label = models.CharField(max_length=150)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["recorded_at", "id"]
        indexes = [models.Index(fields=["person", "recorded_at"], name="contact_record_person")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status=ContactStatus.WAIVED) | ~models.Q(note=""),
                name="contact_waiver_needs_reason",
                violation_error_message="Say why this person does not need to be contacted.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.person_id}: {self.previous_status} → {self.status}"
