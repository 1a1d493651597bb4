"""Messages, their immutable versions, approvals, test sends and the sandbox outbox."""

import hashlib
import json

from django.conf import settings
from django.db import models
from django.utils import timezone


class Immutable(Exception):
    """A message version or a decision was about to be changed or removed. They never are."""


class _AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise Immutable(f"{self.model._meta.verbose_name_plural} are never changed.")

    def delete(self):
        raise Immutable(f"{self.model._meta.verbose_name_plural} are never deleted.")


class _AppendOnly(models.Model):
    """Rows that are written once. On PostgreSQL a trigger refuses UPDATE as well."""

    objects = _AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise Immutable(f"A saved {self._meta.verbose_name} is never changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise Immutable(f"A {self._meta.verbose_name} is never deleted.")


class Message(models.Model):
    """The apology for one segment of an incident. Its text lives in its versions.

    Sender, reply-to and fallback locale are those of the latest version, kept in
    step by services.version_create so that lists need no join.
    """

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="messages"
    )
    segment = models.OneToOneField(
        "incidents.Segment", on_delete=models.PROTECT, related_name="message"
    )
    sender_name = models.CharField(max_length=100, blank=True)
    sender_address = models.CharField(max_length=320, blank=True)
    reply_to = models.CharField(max_length=320, blank=True)
    fallback_locale = models.CharField(max_length=16, default="en")
    version_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["incident", "segment__position", "id"]

    def __str__(self) -> str:
        return f"message {self.pk} for segment {self.segment_id}"


class MessageVersion(_AppendOnly):
    """One saved state of a message: every locale's subject, text and HTML, and the sender.

    Never changed after it is saved; any edit is a new version. `content_hash` is
    SHA-256 over `canonical_content()`, which includes the previous version's hash,
    so approvals (which copy it) stop counting if the row is altered in any way.
    `content` is {locale: {"subject": str, "text": str, "html": str}}; an empty
    text means "derive it from the HTML".
    """

    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    sender_name = models.CharField(max_length=100, blank=True)
    sender_address = models.CharField(max_length=320)
    reply_to = models.CharField(max_length=320, blank=True)
    fallback_locale = models.CharField(max_length=16)
    content = models.JSONField()
    parent_hash = models.CharField("previous version's hash", max_length=64, blank=True)
    content_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["message", "number"]
        constraints = [
            models.UniqueConstraint(fields=["message", "number"], name="message_version_number"),
        ]
        permissions = [
            ("approve_messageversion", "Can approve or reject a message version"),
            ("test_send_messageversion", "Can send a message version to the seed list"),
        ]

    def __str__(self) -> str:
        return f"version {self.number} of message {self.message_id}"

    def canonical_content(self) -> bytes:
        """The exact bytes the hash covers. Stable across databases and dict orders."""
        payload = {
            "format": 1,
            "message": self.message_id,
            "number": self.number,
            "parent_hash": self.parent_hash,
            "sender_name": self.sender_name,
            "sender_address": self.sender_address,
            "reply_to": self.reply_to,
            "fallback_locale": self.fallback_locale,
            "content": self.content,
        }
        return json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()

    def compute_hash(self) -> str:
        return hashlib.sha256(self.canonical_content()).hexdigest()

    @property
    def locales(self) -> list[str]:
        return sorted(self.content)


class Approval(_AppendOnly):
    """One Comms decision on one version: approved, or rejected with a comment.

    An approval counts only while its `content_hash` equals the hash recomputed
    from the version's content (see selectors.version_approval_state).
    """

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    version = models.ForeignKey(MessageVersion, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    content_hash = models.CharField("hash of the version it decided on", max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["version", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "approver"], name="approval_once_per_person"
            ),
            models.CheckConstraint(
                condition=~models.Q(decision="rejected") | ~models.Q(comment=""),
                name="approval_rejection_needs_comment",
                violation_error_message="Say why the version is rejected.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} {self.version}"


class TestSend(models.Model):
    """A version sent to the internal seed list. A test: never a delivery, never counted."""

    # Not a pytest test class, despite the name.
    __test__ = False

    version = models.ForeignKey(MessageVersion, on_delete=models.PROTECT, related_name="test_sends")
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    address_count = models.PositiveIntegerField()
    locales = models.JSONField(default=list)
    message_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"test send of {self.version} to {self.address_count} address(es)"


class OutboxMessage(models.Model):
    """A message the sandbox mail backend kept instead of sending (the embedded demo's outbox)."""

    message_id = models.CharField(max_length=200, unique=True)
    mailer = models.CharField(max_length=50, blank=True)
    from_email = models.CharField(max_length=400)
    to = models.JSONField(default=list)
    reply_to = models.JSONField(default=list)
    subject = models.TextField()
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "outbox message"

    def __str__(self) -> str:
        return f"{self.message_id}: {self.subject[:60]}"
