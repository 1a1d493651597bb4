from django.conf import settings
from django.db import models
from django.utils import timezone


class Suppression(models.Model):
    """An address that must not be e-mailed, and why.

    Suppressed people stay in every affected list, flagged: they must be
    reached another way or waived, never silently dropped.
    """

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Spam complaint"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        DO_NOT_CONTACT = "do_not_contact", "Do-not-contact request"
        OTHER = "other", "Other"

    class Source(models.TextChoices):
        IMPORT = "import", "File import"
        WEBHOOK = "webhook", "ESP webhook"
        MANUAL = "manual", "By hand"
        API = "api", "API"

    address = models.CharField("normalised address", max_length=320, unique=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"suppression {self.pk} ({self.get_reason_display()})"
