import datetime as dt
import hashlib
import json

from django.conf import settings
from django.db import models
from django.utils import timezone

GENESIS_HASH = "0" * 64


class AuditEntry(models.Model):
    """One append-only, hash-chained record of an action.

    `hash` is SHA-256 over the previous entry's hash and this entry's canonical
    content, so editing or removing any entry breaks every hash after it.
    Never put raw e-mail addresses in `before`/`after`: entries can never be
    changed, so personal data there could never be erased. Refer to ids instead.
    """

    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    actor_label = models.CharField(max_length=150, editable=False)
    action = models.CharField(max_length=80, db_index=True, editable=False)
    object_type = models.CharField(max_length=80, editable=False)
    object_id = models.CharField(max_length=64, blank=True, editable=False)
    object_repr = models.CharField(max_length=200, blank=True, editable=False)
    incident = models.ForeignKey(
        "incidents.Incident",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_entries",
        editable=False,
    )
    before = models.JSONField(null=True, blank=True, editable=False)
    after = models.JSONField(null=True, blank=True, editable=False)
    ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "audit entries"
        permissions = [("verify_audit", "Can verify the audit chain")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_repr}"

    def canonical_content(self) -> str:
        """The exact bytes (as text) that the hash covers. Stable across databases."""
        created = self.created_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        content = {
            "seq": self.seq,
            "created_at": created,
            "actor_id": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "incident_id": self.incident_id,
            "before": self.before,
            "after": self.after,
            "ip": self.ip,
        }
        return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def compute_hash(self) -> str:
        payload = (self.prev_hash + self.canonical_content()).encode()
        return hashlib.sha256(payload).hexdigest()
