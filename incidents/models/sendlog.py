from django.conf import settings
from django.db import models
from django.utils import timezone


class SendLogEntry(models.Model):
    """One outbound message the company sent, as its ESP knows it.

    `message_id` is the ESP's id and the idempotency key of every way in: a
    second import, webhook or API call for the same message changes nothing
    but the latest status.
    """

    class Source(models.TextChoices):
        IMPORT = "import", "File import"
        WEBHOOK = "webhook", "ESP webhook"
        API = "api", "API"

    message_id = models.CharField("ESP message id", max_length=255, unique=True)
    recipient = models.CharField("recipient as received", max_length=320)
    address = models.CharField("normalised address", max_length=320, db_index=True)
    customer_id = models.CharField(max_length=100, blank=True)
    template = models.CharField("template or campaign", max_length=200, blank=True)
    # Lower-cased and stored as ";a;b;" so one LIKE finds a tag on every database.
    tags = models.CharField(max_length=1000, blank=True)
    sent_at = models.DateTimeField()
    locale = models.CharField(max_length=16, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField("latest ESP status", max_length=20, default="sent")
    # When the event behind `status` happened, so an older event arriving late
    # (webhooks come out of order) never overwrites a newer status.
    status_at = models.DateTimeField("time of the latest ESP event", null=True, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.IMPORT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "send log entry"
        verbose_name_plural = "send log"
        indexes = [
            # The audience query starts from "this template in this window".
            models.Index(fields=["template", "sent_at"], name="sendlog_template_sent"),
            models.Index(fields=["sent_at"], name="sendlog_sent"),
        ]
        permissions = [("import_sendlog", "Can import send log files and batches")]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.recipient}"

    @property
    def tag_list(self) -> list[str]:
        return [tag for tag in self.tags.split(";") if tag]


class SendLogImport(models.Model):
    """One bulk file import, from the command line or an upload, with its outcome."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10)  # csv | jsonl
    file_size = models.PositiveBigIntegerField(default=0)
    column_map = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_read = models.PositiveBigIntegerField(default=0)
    rows_inserted = models.PositiveBigIntegerField(default=0)
    rows_duplicate = models.PositiveBigIntegerField(default=0)
    rows_rejected = models.PositiveBigIntegerField(default=0)
    bytes_read = models.PositiveBigIntegerField(default=0)
    error_report = models.CharField(max_length=500, blank=True)
    failure = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.file_name} ({self.get_status_display()})"

    @property
    def progress(self) -> float:
        """Share of the file read so far, 0–1."""
        if self.status == self.Status.DONE:
            return 1.0
        return min(self.bytes_read / self.file_size, 1.0) if self.file_size else 0.0
