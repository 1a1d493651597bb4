"""Evidence packs: one requested export of an incident for auditors, and its files."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV (spreadsheet-safe)"
    JSONL = "jsonl", "JSON Lines"
    PDF = "pdf", "Printable report (PDF and HTML)"


class EvidenceExport(models.Model):
    """One evidence pack: requested, built by a background job, downloaded, then expired.

    The files live under EXPORT_ROOT in `path` (a directory named after the row,
    never taken from a request), with `manifest.json` listing each file's SHA-256
    and the audit chain's head at export time; `sha256` is the manifest's own
    hash, also written to the audit trail when the pack is finished.
    """

    Format = ExportFormat

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Building"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="evidence_exports"
    )
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    pii = models.BooleanField("with addresses (not pseudonymised)", default=False)
    reason = models.TextField("why this export is needed", blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveBigIntegerField("affected people to write", default=0)
    rows_done = models.PositiveBigIntegerField("affected people written", default=0)
    path = models.CharField("directory under EXPORT_ROOT", max_length=300, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField("SHA-256 of manifest.json", max_length=64, blank=True)
    head_seq = models.PositiveBigIntegerField("audit chain head at export", null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    failure = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="export_expiry")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(pii=False) | ~models.Q(reason=""),
                name="export_pii_needs_reason",
                violation_error_message="Say why this export needs the addresses.",
            ),
        ]
        permissions = [
            ("export_evidence", "Can export an incident's evidence pack (pseudonymised)"),
            ("export_pii", "Can export an evidence pack with addresses, giving a reason"),
        ]

    def __str__(self) -> str:
        return f"evidence export {self.pk} of incident {self.incident_id} ({self.status})"

    @property
    def progress(self) -> float:
        if self.status == self.Status.DONE:
            return 1.0
        return min(self.rows_done / self.rows_total, 1.0) if self.rows_total else 0.0

    def is_expired(self, now=None) -> bool:
        return self.status == self.Status.EXPIRED or self.expires_at <= (now or timezone.now())

    @property
    def downloadable(self) -> bool:
        return self.status == self.Status.DONE and not self.is_expired()
